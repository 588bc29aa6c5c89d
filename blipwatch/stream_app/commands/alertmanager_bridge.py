"""``blipwatch alertmanager-bridge``: post the alerts topic to Alertmanager's v2 API."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alertmanager-bridge", help="forward alerts from the alerts topic to Alertmanager",
        description="Consumes the alerts topic (BLIPWATCH_ALERTS_TOPIC on BLIPWATCH_BROKER) in its own "
                    "consumer group and keeps Alertmanager in step: firing incidents are posted and "
                    "re-posted every --resend-interval seconds, resolved ones are posted with their end "
                    "time. While Alertmanager is unreachable it retries with backoff and keeps the latest "
                    "state of every incident. Ctrl-C or SIGTERM stops it. The worker runs the same bridge "
                    "in-process when BLIPWATCH_ALERTMANAGER_URL is set.",
    )
    parser.add_argument("--url", default=os.environ.get("BLIPWATCH_ALERTMANAGER_URL") or None,
                        help="Alertmanager base URL, e.g. http://127.0.0.1:9093 "
                             "(default: $BLIPWATCH_ALERTMANAGER_URL)")
    parser.add_argument("--dashboard-url", default=os.environ.get("BLIPWATCH_DASHBOARD_URL") or None,
                        help="Grafana base URL for the 'dashboard' link on each alert, e.g. "
                             "http://grafana:3000 (default: $BLIPWATCH_DASHBOARD_URL; no link when unset)")
    parser.add_argument("--group-id", default="blipwatch-alertmanager-bridge",
                        help="Kafka consumer group (default: %(default)s)")
    parser.add_argument("--resend-interval", type=float, default=60.0,
                        help="seconds between re-posts of a firing incident; Alertmanager wants 30-180 "
                             "(default: %(default)s)")
    parser.add_argument("--max-backoff", type=float, default=30.0,
                        help="cap in seconds of the retry delay while Alertmanager is down (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from blipwatch.stream_app.alertmanager_bridge import AlertmanagerBridge
    from blipwatch.stream_app.config import Settings

    if not args.url:
        print("blipwatch alertmanager-bridge: no Alertmanager URL: pass --url http://HOST:9093 "
              "or set BLIPWATCH_ALERTMANAGER_URL", file=sys.stderr)
        return 2
    if not 1 <= args.resend_interval <= 180:
        print(f"blipwatch alertmanager-bridge: --resend-interval {args.resend_interval:g} must be between 1 and "
              "180 s (Alertmanager expects re-sends every 30 s to 3 min)", file=sys.stderr)
        return 2
    settings = Settings.from_env()  # a ConfigError here is reported by cli.main in one line
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level.upper() in logging._nameToLevel
                        else "INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    bridge = AlertmanagerBridge(settings, args.url, dashboard_url=args.dashboard_url, group_id=args.group_id,
                                resend_interval=args.resend_interval, max_backoff=args.max_backoff)

    async def main() -> None:
        task = asyncio.create_task(bridge.run())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    print(f"alertmanager-bridge: {settings.alerts_topic} on {settings.broker} -> {bridge.url}/api/v2/alerts "
          "(Ctrl-C stops it)", flush=True)
    from aiokafka.errors import KafkaConnectionError

    try:
        asyncio.run(main())
    except KafkaConnectionError as exc:
        print(f"blipwatch alertmanager-bridge: cannot reach Kafka at {settings.broker}: {exc}; "
              "check BLIPWATCH_BROKER", file=sys.stderr)
        return 1
    return 0

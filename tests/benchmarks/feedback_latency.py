"""How soon a verdict written to the feedback topic reaches the worker's FeedbackFollower.

    .venv/bin/python tests/benchmarks/feedback_latency.py [--verdicts 20] [--poll-ms 500]

Starts the embedded broker, a follower on it, then writes one verdict at a time (a kafka-python
producer, acks=all) and times from the send to ``on_verdict``: median and max, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from kafka import KafkaProducer

from blipwatch.schemas.feedback import Feedback
from blipwatch.stream_app.config import Settings
from blipwatch.stream_app.embedded_broker import EmbeddedBroker
from blipwatch.stream_app.feedback_follower import FeedbackFollower


async def measure(settings: Settings, bootstrap: str, verdicts: int, poll_ms: int) -> list[float]:
    arrived: asyncio.Queue[float] = asyncio.Queue()
    follower = FeedbackFollower(settings, on_verdict=lambda _: arrived.put_nowait(time.monotonic()), poll_ms=poll_ms)
    await follower.start()
    await follower.caught_up.wait()
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", enable_idempotence=False)
    delays = []
    try:
        for n in range(verdicts):
            feedback = Feedback(f"event_volume|all@2026-01-05T{n % 24:02d}:{n // 24:02d}:00Z", "false_positive",
                                "2026-01-05T08:00:00Z", "kafka")
            sent = time.monotonic()
            producer.send(settings.feedback_topic, key=feedback.key, value=feedback.to_json())
            await asyncio.to_thread(producer.flush)
            delays.append(await asyncio.wait_for(arrived.get(), 10) - sent)
    finally:
        producer.close()
        await follower.stop()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verdicts", type=int, default=20)
    parser.add_argument("--poll-ms", type=int, default=500)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        settings = Settings.from_env({"BLIPWATCH_BROKER": broker.url, "BLIPWATCH_EMBEDDED_BROKER": "1"})
        delays = asyncio.run(measure(settings, broker.bootstrap, args.verdicts, args.poll_ms))
    print(f"verdict written -> on_verdict: median {statistics.median(delays) * 1000:.0f} ms, "
          f"max {max(delays) * 1000:.0f} ms ({len(delays)} verdicts, poll {args.poll_ms} ms)")


if __name__ == "__main__":
    main()

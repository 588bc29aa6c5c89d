"""``blipwatch simulate``: realistic customer events with labelled incidents, to a file or to Kafka."""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="write realistic customer events, with labelled incidents, to a file or to Kafka",
        description="Generates customer-behaviour events (the customer event contract): sessions walking a shop funnel "
                    "across channels, countries and devices, with daily and weekly seasonality and noise, "
                    "plus a named incident scenario (--list-scenarios). Event time runs from --start for "
                    "--hours, independent of the wall clock. The same arguments give byte-identical output. "
                    "--labels writes what was injected, for `blipwatch evaluate`.",
    )
    parser.add_argument("--scenario", default="none", help="scenario name (default: none); see --list-scenarios")
    parser.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--hours", type=float, help="hours of event time (default: the scenario's)")
    parser.add_argument("--start", help="first event time, ISO 8601 (default: the scenario's, "
                                        "Monday 2026-01-05T00:00:00Z for most)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--sessions-per-minute", type=float,
                        help="mean session starts per minute over a day (default 480: a mid-size shop, about 9 events each, ~6M events a simulated day)")
    parser.add_argument("--incident-offset-hours", type=float,
                        help="for a one-incident scenario: start the incident this many hours after --start")
    parser.add_argument("--out", help="write JSON lines to this file ('-' for standard output)")
    parser.add_argument("--kafka", action="store_true",
                        help="send to the events topic (BLIPWATCH_BROKER, BLIPWATCH_EVENTS_TOPIC) instead")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="with --kafka: send this many events per wall-clock second")
    pace.add_argument("--speed", type=float,
                      help="with --kafka: simulated seconds per wall-clock second (default: as fast as "
                           "the broker takes them)")
    parser.add_argument("--tracker", choices=("blipwatch", "segment", "ga4", "snowplow"),
                        help="the format of the events (default: with --kafka the input preset, "
                             "BLIPWATCH_INPUT_PRESET or the config's input.preset, else blipwatch's contract); a tracker's sends no "
                             "cart_abandoned (funnels come from journeys), see docs/inputs.md")
    parser.add_argument("--labels", help="write the injected incidents (JSON) to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"blipwatch simulate: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    import orjson

    from blipwatch.tools import simulator

    if args.list_scenarios:
        _list_scenarios(simulator)
        return 0
    if bool(args.out) == bool(args.kafka):
        return _fail("say where the events go: --out FILE (or '-') or --kafka")
    if (args.rate is not None or args.speed is not None) and not args.kafka:
        return _fail("--rate and --speed pace sending to Kafka; a file is written as fast as possible")
    for name in ("rate", "speed"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            return _fail(f"--{name} must be more than 0, not {value}")
    options = dict(scenario=args.scenario, start=args.start, hours=args.hours, seed=args.seed,
                   sessions_per_minute=args.sessions_per_minute, incident_offset_hours=args.incident_offset_hours)
    try:
        labels = simulator.run_labels(**options)
        events = simulator.generate_events(**options)
    except simulator.ScenarioError as exc:
        return _fail(str(exc))
    if args.labels:
        try:
            with open(args.labels, "wb") as labels_file:
                labels_file.write(orjson.dumps(labels, option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            return _fail(f"cannot write the labels to {args.labels}: {exc.strerror}")
    if args.kafka:
        return _to_kafka(events, args, labels)
    return _to_file(events, args, labels)


def _list_scenarios(simulator) -> None:
    for name, scenario in simulator.SCENARIOS.items():
        start = scenario.start.strftime("%a %Y-%m-%d %H:%M UTC")
        print(f"{name:24} {scenario.hours:>4g} h from {start}: {scenario.description}")
        for label in simulator.scenario_labels(name):
            segment = ",".join(f"{k}={v}" for k, v in label["segment"].items()) or "all"
            note = " (must not alert)" if not label["expect_alert"] else " (subtle)" if label["subtle"] else ""
            print(f"{'':26}{label['start'][:16]}..{label['end'][11:16]}  {label['name']} on {segment}: "
                  f"{', '.join(f'{m} {d}' for m, d in label['directions'].items())}{note}")


class _Progress:
    """A progress line on stderr (tqdm) when it is a terminal; counts either way."""

    def __init__(self, quiet: bool, what: str):
        self.count = 0
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(unit=" events", unit_scale=True, desc=what, file=sys.stderr, mininterval=0.5)

    def add(self, count: int, event_time: str) -> None:
        self.count += count
        if self.bar is not None:
            self.bar.set_postfix_str(f"event time {event_time[:19]}", refresh=False)
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(count: int, labels: dict, where: str, seconds: float) -> str:
    return (f"{count:,} events of scenario {labels['scenario']!r} ({labels['start']} to {labels['end']}, "
            f"{len(labels['incidents'])} incidents) {where} in {seconds:.1f} s ({count / max(seconds, 1e-9):,.0f} events/s)")


def _to_file(events, args: argparse.Namespace, labels: dict) -> int:
    dumps = simulator_encoder(args)
    began = time.perf_counter()
    progress = _Progress(args.quiet or args.out == "-", "simulate")
    try:
        output = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
    except OSError as exc:
        return _fail(f"cannot write {args.out}: {exc.strerror}")
    last = ""
    try:
        batch: list[bytes] = []
        for event in events:
            value = dumps(event)
            if value is None:
                continue
            batch.append(value)
            if len(batch) == 10_000:
                output.write(b"\n".join(batch) + b"\n")
                last = event["occurred_at"]
                progress.add(len(batch), last)
                batch = []
        if batch:
            output.write(b"\n".join(batch) + b"\n")
            progress.add(len(batch), last)
    except BrokenPipeError:
        return 0
    finally:
        progress.close()
        if output is not sys.stdout.buffer:
            output.close()
    where = "written to standard output" if args.out == "-" else f"written to {args.out}"
    print(_summary(progress.count, labels, where, time.perf_counter() - began), file=sys.stderr)
    return 0


def _to_kafka(events, args: argparse.Namespace, labels: dict) -> int:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from blipwatch.stream_app.config import Settings
    from blipwatch.tools.simulator import parse_time

    settings = Settings.from_env()
    try:
        producer = KafkaProducer(
            **settings.kafka_python_kwargs(),
            # not idempotent: it would fail on every send after a broker restart (docs/architecture.md, the embedded broker)
            enable_idempotence=False, acks=1, linger_ms=20, batch_size=256 * 1024, max_block_ms=15_000,
            compression_type="gzip",   # measured on the embedded broker: 35k events/s, 23k without
            bootstrap_timeout_ms=10_000,
        )
    except KafkaError:   # kafka-python 3 raises KafkaTimeoutError when it cannot bootstrap
        print(f"blipwatch simulate: cannot reach Kafka at {settings.broker}: start it (e.g. `blipwatch broker`) "
              "or set BLIPWATCH_BROKER", file=sys.stderr)
        return 1
    failures: list[Exception] = []
    topic = settings.events_topic
    dumps = simulator_encoder(args)
    progress = _Progress(args.quiet, f"→ {topic}")
    began = time.perf_counter()
    first_seconds = None
    sent = 0
    try:
        for event in events:
            value = dumps(event)
            if value is None:
                continue
            key = (event.get("customer_id") or event["session_id"]).encode()
            producer.send(topic, key=key, value=value).add_errback(failures.append)
            sent += 1
            if args.rate is not None:
                ahead = began + sent / args.rate - time.perf_counter()
                if ahead > 0.002:
                    time.sleep(ahead)
            elif args.speed is not None and sent % 50 == 1:   # pace on every 50th event's time
                event_seconds = parse_time(event["occurred_at"]).timestamp()
                first_seconds = event_seconds if first_seconds is None else first_seconds
                ahead = began + (event_seconds - first_seconds) / args.speed - time.perf_counter()
                if ahead > 0.002:
                    time.sleep(ahead)
            if sent % 1000 == 0:
                progress.add(1000, event["occurred_at"])
                if failures:
                    break
        producer.flush(timeout=60)
    except KafkaError as exc:
        failures.append(exc)
    except KeyboardInterrupt:
        progress.close()
        producer.close(timeout=5)
        print(f"blipwatch simulate: interrupted after {sent:,} events", file=sys.stderr)
        return 130
    finally:
        progress.close()
    producer.close(timeout=10)
    if failures:
        print(f"blipwatch simulate: sending to {topic} at {settings.broker} failed after {sent:,} events: "
              f"{failures[0]!r}", file=sys.stderr)
        return 1
    print(_summary(sent, labels, f"sent to {topic} at {settings.broker}", time.perf_counter() - began),
          file=sys.stderr)
    return 0


def simulator_encoder(args: argparse.Namespace):
    """Event dict -> the bytes of ``--tracker``'s format (None: that tracker sends no such event)."""
    from blipwatch.tools.trackers import tracker_encoder

    tracker = getattr(args, "tracker", None)
    if tracker is None and getattr(args, "kafka", False):   # the worker reads the input preset's format
        from blipwatch.stream_app.config import Settings, input_preset, load_catalogue

        settings = Settings.from_env()
        tracker = input_preset(settings, load_catalogue(settings, None))
    return tracker_encoder(tracker or "blipwatch")

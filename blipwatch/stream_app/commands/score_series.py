"""``blipwatch score-series``: score CSV time series offline with the stream's detectors."""

from __future__ import annotations

import argparse
import csv
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

KINDS = ("rate", "count", "value")
OUTPUT_COLUMNS = ["timestamp", "value", "expected", "lower", "upper", "score", "is_anomaly"]
PROGRESS_ROWS = 20_000  # inputs at least this long get a progress bar


class InputError(Exception):
    """Bad input a user can fix; the message is one line."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score-series", help="score CSV time series one point at a time (no look-ahead)",
        description="Scores each row of IN.csv (header timestamp,value and optionally numerator,"
                    "denominator) before learning it, with the same detectors the stream uses, and "
                    "writes timestamp,value,expected,lower,upper,score,is_anomaly in input order. "
                    "Timestamps: ISO 8601 or epoch seconds/milliseconds. One input: OUT is a file; "
                    "several: OUT is a folder and each output keeps its input's name.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IN.csv", help="input CSV file(s)")
    parser.add_argument("--out", required=True, metavar="OUT", help="output file (one input) or folder (several)")
    parser.add_argument("--kind", choices=KINDS, default=None,
                        help="metric kind (default: rate when numerator,denominator columns exist, else value)")
    parser.add_argument("--config", metavar="YAML", default=None,
                        help="YAML file whose 'detector:' section sets detector settings (flat and/or per kind)")
    parser.set_defaults(func=run)


def load_detector_settings(path: str) -> dict[str, Any]:
    """The ``detector:`` section of a YAML config, checked against the known settings."""
    import yaml

    from blipwatch.detectors import SettingsError, resolve_settings

    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"config file {path} is not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise InputError(f"config file {path}: expected a mapping at the top level")
    section = document.get("detector") or {}
    if not isinstance(section, dict):
        raise InputError(f"config file {path}: 'detector' must be a mapping of settings")
    for kind in KINDS:
        try:
            resolve_settings(kind, section)
        except SettingsError as exc:
            raise InputError(f"config file {path}: {exc}") from None
    return section


def parse_timestamp(text: str) -> float:
    """Epoch seconds from ISO 8601 (naive = UTC) or epoch seconds / milliseconds."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    if not math.isfinite(number):
        raise ValueError(text)
    return number / 1000.0 if abs(number) >= 1e11 else number


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "" or text.strip().lower() in ("nan", "null", "none"):
        return None
    value = float(text)
    if not math.isfinite(value):
        return None
    return value


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


def score_file(source: Path, target: Path, kind: str | None, settings: dict[str, Any] | None,
               progress: bool = True) -> int:
    """Score one CSV; returns the number of rows written."""
    from blipwatch.detectors import make_detector

    try:
        handle = source.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{source}: is a folder, not a CSV file") from None
    with handle:
        lines = handle.readlines()
    reader = csv.reader(lines)
    header = [name.strip().lower() for name in next(reader, [])]
    if "timestamp" not in header or "value" not in header:
        raise InputError(f"{source}: the header must name timestamp and value columns "
                         f"(optionally numerator,denominator), found {','.join(header) or 'nothing'}")
    has_ratio = "numerator" in header and "denominator" in header
    if ("numerator" in header) != ("denominator" in header):
        raise InputError(f"{source}: numerator and denominator columns go together")
    kind = kind or ("rate" if has_ratio else "value")
    detector = make_detector(kind, settings)
    columns = {name: header.index(name) for name in ("timestamp", "value", "numerator", "denominator")
               if name in header}

    rows = reader
    if progress and len(lines) > PROGRESS_ROWS:
        from tqdm import tqdm

        rows = tqdm(reader, total=len(lines) - 1, desc=source.name, unit="row", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(OUTPUT_COLUMNS)
        for line_number, row in enumerate(rows, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            try:
                raw_time = row[columns["timestamp"]]
                t = parse_timestamp(raw_time)
                value = _number(row[columns["value"]])
                numerator = _number(row[columns["numerator"]]) if has_ratio else None
                denominator = _number(row[columns["denominator"]]) if has_ratio else None
            except (ValueError, IndexError, OverflowError):
                raise InputError(f"{source}: line {line_number} cannot be read "
                                 f"(expected a timestamp and numbers): {','.join(row)[:80]}") from None
            if value is None and numerator is not None and denominator:
                value = numerator / denominator
            x = {"t": t, "value": value, "numerator": numerator, "denominator": denominator}
            scored = detector.judge_one(x)
            detector.learn_one(x)
            writer.writerow([raw_time.strip(), _fmt(value), _fmt(scored.expected), _fmt(scored.lower),
                             _fmt(scored.upper), f"{scored.score:.6f}", int(scored.is_anomaly)])
            written += 1
    return written


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_detector_settings(args.config) if args.config else None
        sources = [Path(p) for p in args.inputs]
        for source in sources:
            if not source.is_file():
                raise InputError(f"{source}: no such file")
        out = Path(args.out)
        if len(sources) == 1 and not out.is_dir():
            targets = [out]
        else:
            names = [s.name for s in sources]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise InputError(f"several inputs are named {duplicates[0]}; their outputs would collide in {out}")
            if out.exists() and not out.is_dir():
                raise InputError(f"{out} is a file; with several inputs --out must be a folder")
            targets = [out / s.name for s in sources]
        for source, target in zip(sources, targets):
            if source.resolve() == target.resolve():
                raise InputError(f"{target} would overwrite its own input; choose another --out")
            count = score_file(source, target, args.kind, settings)
            print(f"{source} -> {target} ({count} rows)", file=sys.stderr)
    except InputError as exc:
        print(f"blipwatch score-series: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"blipwatch score-series: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    return 0

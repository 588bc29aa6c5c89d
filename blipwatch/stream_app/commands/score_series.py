"""``blipwatch score-series``: score CSV time series offline with the stream's detectors."""

from __future__ import annotations

import argparse
import csv
import math
import os
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


#: Epoch numbers are read as seconds in [1e9, 1e11) (2001-09 to 5138) and as milliseconds in
#: [1e11, 1e14); anything else (``2024``, ``0``) is ambiguous and refused rather than guessed.
EPOCH_SECONDS = (1e9, 1e11)
EPOCH_MILLIS = (1e11, 1e14)
#: Values beyond this are refused: the detectors' sums of squares lose every digit of them.
MAX_ABS_VALUE = 1e15


def parse_timestamp(text: str) -> float:
    """Epoch seconds from ISO 8601 (naive = UTC) or epoch seconds / milliseconds.

    >>> parse_timestamp("1700000000"), parse_timestamp("1700000000000"), parse_timestamp("2024-05-01T00:00:00Z")
    (1700000000.0, 1700000000.0, 1714521600.0)
    >>> parse_timestamp("2024")
    Traceback (most recent call last):
    ValueError: 2024 is neither ISO 8601 nor epoch seconds (1e9..1e11) or milliseconds (1e11..1e14)
    """
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    if EPOCH_SECONDS[0] <= number < EPOCH_SECONDS[1]:
        return number
    if EPOCH_MILLIS[0] <= number < EPOCH_MILLIS[1]:
        return number / 1000.0
    raise ValueError(f"{text[:40]} is neither ISO 8601 nor epoch seconds (1e9..1e11) or milliseconds (1e11..1e14)")


def _number(text: str | None, name: str) -> float | None:
    """A cell as a finite number; empty, ``nan``, ``null`` or ``none`` are a missing value."""
    if text is None or text.strip() == "" or text.strip().lower() in ("nan", "null", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text.strip()[:40]!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
        raise ValueError(f"{name} {text.strip()[:40]} is not a finite number within +-{MAX_ABS_VALUE:g}")
    return value


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


def score_file(source: Path, target: Path, kind: str | None, settings: dict[str, Any] | None,
               progress: bool = True) -> int:
    """Score one CSV into ``target`` (written whole or not at all); returns the number of rows written."""
    from blipwatch.detectors import make_detector

    try:
        handle = source.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{source}: is a folder, not a CSV file") from None
    with handle:
        try:
            lines = handle.readlines()
        except UnicodeDecodeError as exc:
            raise InputError(f"{source}: not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    reader = csv.reader(lines)
    try:
        header = [name.strip().lower() for name in next(reader, [])]
    except csv.Error as exc:
        raise InputError(f"{source}: line 1 cannot be read as CSV ({exc})") from None
    if "timestamp" not in header or "value" not in header:
        raise InputError(f"{source}: the header must name timestamp and value columns "
                         f"(optionally numerator,denominator), found {','.join(header)[:200] or 'nothing'}")
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
    # written next to the target and renamed at the end: a bad line never leaves a partial --out
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    written = 0
    previous: tuple[float, int] | None = None
    try:
        with partial.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(OUTPUT_COLUMNS)
            rows = iter(rows)
            line_number = 1
            while True:
                line_number += 1
                try:
                    row = next(rows)
                except StopIteration:
                    break
                except csv.Error as exc:
                    raise InputError(f"{source}: line {line_number} cannot be read as CSV ({exc})") from None
                if not row or all(not cell.strip() for cell in row):
                    continue
                try:
                    raw_time = row[columns["timestamp"]]
                    t = parse_timestamp(raw_time)
                    value = _number(row[columns["value"]], "value")
                    numerator = _number(row[columns["numerator"]], "numerator") if has_ratio else None
                    denominator = _number(row[columns["denominator"]], "denominator") if has_ratio else None
                    check_rate(numerator, denominator)
                except IndexError:
                    raise InputError(f"{source}: line {line_number} has fewer columns than the header: "
                                     f"{','.join(row)[:80]}") from None
                except (ValueError, OverflowError) as exc:
                    raise InputError(f"{source}: line {line_number} cannot be read ({exc}): {','.join(row)[:80]}") \
                        from None
                if previous is not None and t <= previous[0]:
                    raise InputError(f"{source}: line {line_number}: timestamp {raw_time.strip()[:40]} is "
                                     f"{'the same as' if t == previous[0] else 'before'} line {previous[1]}'s; "
                                     "rows must be in time order, one per timestamp")
                previous = (t, line_number)
                if value is None and numerator is not None and denominator:
                    value = numerator / denominator
                x = {"t": t, "value": value, "numerator": numerator, "denominator": denominator}
                scored = detector.judge_one(x)
                detector.learn_one(x)
                writer.writerow([raw_time.strip(), _fmt(value), _fmt(scored.expected), _fmt(scored.lower),
                                 _fmt(scored.upper), f"{scored.score:.6f}", int(scored.is_anomaly)])
                written += 1
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return written


def check_rate(numerator: float | None, denominator: float | None) -> None:
    """A rate's counts: not negative, and the numerator is part of the denominator.

    >>> check_rate(3, 10); check_rate(None, None)
    >>> check_rate(11, 10)
    Traceback (most recent call last):
    ValueError: numerator 11 is more than denominator 10 (a rate's numerator counts part of its denominator)
    """
    if numerator is None or denominator is None:
        return
    if numerator < 0 or denominator < 0:
        raise ValueError(f"numerator {numerator:g} and denominator {denominator:g} must not be negative")
    if numerator > denominator:
        raise ValueError(f"numerator {numerator:g} is more than denominator {denominator:g} "
                         "(a rate's numerator counts part of its denominator)")


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

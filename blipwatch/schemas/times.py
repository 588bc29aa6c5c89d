"""Times in the contracts: RFC 3339 text or epoch milliseconds, read and written in one place.

``parse_time`` is strict: whatever cannot be a moment between years 1 and 9999 (``"yesterday"``,
``True``, ``Infinity``, ``1e30``, ``-1e20``) raises ``ValueError`` with the value in the message,
never ``OverflowError`` or ``OSError``, so a caller that skips bad records catches one type.

>>> parse_time("2025-03-01T12:00:00Z").isoformat()
'2025-03-01T12:00:00+00:00'
>>> parse_time(1740830400000).isoformat()
'2025-03-01T12:00:00+00:00'
>>> format_time(1740830400123)
'2025-03-01T12:00:00.123Z'
>>> parse_time(format_time(1740830400123)).timestamp()
1740830400.123
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any


def parse_time(value: Any) -> datetime:
    """An RFC 3339 / ISO 8601 string (no zone = UTC) or epoch milliseconds, as an aware UTC datetime.

    >>> parse_time("2025-03-01 12:00:00").tzinfo
    datetime.timezone.utc
    >>> for bad in ("yesterday", True, None, float("inf"), 1e30, -1e20, [1]):
    ...     try:
    ...         parse_time(bad)
    ...     except ValueError as exc:
    ...         print(exc)
    'yesterday' is not an RFC 3339 time
    True is not a time (RFC 3339 text or epoch milliseconds)
    None is not a time (RFC 3339 text or epoch milliseconds)
    inf is not a time (RFC 3339 text or epoch milliseconds)
    1e+30 is out of range for epoch milliseconds
    -1e+20 is out of range for epoch milliseconds
    [1] is not a time (RFC 3339 text or epoch milliseconds)
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value[:80]!r} is not an RFC 3339 time") from None
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{str(value)[:80]} is not a time (RFC 3339 text or epoch milliseconds)")
    try:
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{value:g} is out of range for epoch milliseconds") from None


def format_time(epoch_ms: int | float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-01-05T20:05:03.123Z``."""
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


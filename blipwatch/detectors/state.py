"""Per-series state as small bytes with an explicit format version.

Not pickle: River pickles broke between 0.24 and 0.25. A blob is a header line
``blipwatch-state/<version>`` followed by zlib-compressed JSON of named fields. A blob of
another version (or a damaged one) raises :class:`StateVersionError`, so the caller re-warms
that series on purpose instead of crashing.
"""

from __future__ import annotations

import json
import zlib

from blipwatch.detectors.policy import AlertPolicy
from blipwatch.detectors.series import SeriesDetector

FORMAT_VERSION = 4
_MAGIC = b"blipwatch-state/"


class StateVersionError(ValueError):
    """The stored state is of an unknown or old format version (or damaged): re-warm the series."""


def dump_state(obj: SeriesDetector | AlertPolicy) -> bytes:
    """Serialise a detector or a policy.

    >>> from blipwatch.detectors import make_detector
    >>> det = make_detector("count")
    >>> det.learn_one(0.0, 12)
    >>> blob = dump_state(det)
    >>> blob.startswith(b"blipwatch-state/4\\n"), len(blob) < 20_000
    (True, True)
    >>> load_state(blob).score_one(60.0, 12) == det.score_one(60.0, 12)
    True
    >>> load_state(b"blipwatch-state/0\\n...")
    Traceback (most recent call last):
    ...
    blipwatch.detectors.state.StateVersionError: stored state has format version 0, this blipwatch reads version 4: re-warm the series
    """
    if isinstance(obj, SeriesDetector):
        body = {"type": "detector", **obj.to_state()}
    elif isinstance(obj, AlertPolicy):
        body = {"type": "policy", "state": obj.to_state()}
    else:
        raise TypeError(f"dump_state takes a detector or an AlertPolicy, not {type(obj).__name__}")
    payload = json.dumps(body, separators=(",", ":"), allow_nan=True).encode()
    return _MAGIC + str(FORMAT_VERSION).encode() + b"\n" + zlib.compress(payload, 6)


def load_state(blob: bytes) -> SeriesDetector | AlertPolicy:
    """The detector or policy stored by :func:`dump_state`; StateVersionError if unreadable."""
    if not isinstance(blob, (bytes, bytearray)) or not blob.startswith(_MAGIC) or b"\n" not in blob:
        raise StateVersionError("stored state has no blipwatch format header: re-warm the series")
    header, payload = bytes(blob).split(b"\n", 1)
    version = header[len(_MAGIC):].decode("ascii", "replace")
    if version != str(FORMAT_VERSION):
        raise StateVersionError(
            f"stored state has format version {version}, this blipwatch reads version "
            f"{FORMAT_VERSION}: re-warm the series")
    try:
        body = json.loads(zlib.decompress(payload))
        if body["type"] == "detector":
            return SeriesDetector.from_state(body)
        if body["type"] == "policy":
            return AlertPolicy.from_state(body["state"])
        raise KeyError(body["type"])
    except Exception as exc:  # any damage means the same thing to the caller: re-warm
        raise StateVersionError(f"stored state is damaged ({exc.__class__.__name__}): re-warm the series") from None

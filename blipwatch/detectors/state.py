"""Per-series state as small bytes with an explicit format version.

Not pickle: River pickles broke between 0.24 and 0.25. A blob is a header line
``blipwatch-state/<version> <layout>`` followed by one MessagePack array (msgspec): a type tag
("detector", "policy" or "series") and the object's fields. A blob of another version or
layout (or a damaged one) raises :class:`StateVersionError`, so the caller re-warms that
series on purpose instead of crashing.

Floats are MessagePack float64, so NaN, ±inf and -0.0 round-trip bit for bit (a restored
detector scores byte-identically). Settings are stored by name (a setting added later takes its
default); the running state is stored by position in ``_STATE_FIELDS`` order, and ``LAYOUT``, a
checksum of those field names, is part of the header: a state written with other fields is
refused like an old version.

Format 16 adds a detector's ``shift_up`` and ``shift_down`` (its runs' shifts). Format 10 adds a detector's ``hold_left``. Format 8: the value kind's change score (``changes.py``) in a detector. Format 7: a series record also holds its last incident's windows and what people said about it
(``pipeline.feedback.SeriesFeedback``); a format-6 state re-warms. Format 6: only our own fields. The Page-Hinkley test is ours (``page_hinkley.STATE_FIELDS``), no
longer River's private fields (format 5 stored those; a format-5 state is refused and its series
re-warms). A detector running a River model (``river_models``) stores its own fields, its
calibration's raw scores and the model as River's pickle tagged with River's version
(``river_compat``): another River version re-warms the series.
"""

from __future__ import annotations

import operator
import zlib
from dataclasses import fields
from typing import Any, NamedTuple

import msgspec

from blipwatch.detectors.base import SeriesDetector
from blipwatch.detectors.kinds import KIND_CLASSES, make_detector
from blipwatch.detectors.page_hinkley import STATE_FIELDS as _SHIFT_FIELDS
from blipwatch.detectors.policy import AlertPolicy, settings_names
from blipwatch.detectors.river_models import RiverModelDetector

FORMAT_VERSION = 16
_MAGIC = b"blipwatch-state/"

_POLICY_SETTINGS = tuple(settings_names())
_POLICY_STATE = tuple(f.name for f in fields(AlertPolicy) if f.name not in _POLICY_SETTINGS)


def _layout() -> str:
    """Checksum of every name whose position decides what a stored value means."""
    parts = [f"{kind}={cls.__name__}:{','.join(cls._STATE_FIELDS)}"
             for kind, cls in sorted(KIND_CLASSES.items())]
    parts += ["shift:" + ",".join(_SHIFT_FIELDS), "policy:" + ",".join(_POLICY_STATE),
              "model:" + ",".join(RiverModelDetector._STATE_FIELDS) + ",calibration,river",
              "series:last_closed,incident,detector,policy,record,feedback"]
    return f"{zlib.crc32('|'.join(parts).encode()):08x}"


#: Changes whenever a running-state field is added, removed, renamed or moved (bump FORMAT_VERSION too).
LAYOUT = _layout()
_HEADER = _MAGIC + f"{FORMAT_VERSION} {LAYOUT}\n".encode()
_STATE_GETTERS = {cls: operator.attrgetter(*cls._STATE_FIELDS) for cls in KIND_CLASSES.values()}
_SHIFT_GET = operator.attrgetter(*_SHIFT_FIELDS)
_POLICY_SETTINGS_GET = operator.attrgetter(*_POLICY_SETTINGS)
_POLICY_STATE_GET = operator.attrgetter(*_POLICY_STATE)


def _plain(obj: Any) -> Any:
    """numpy scalars (never seen in a state so far) as the Python numbers they equal, bit for bit."""
    item = getattr(obj, "item", None)
    if item is not None:
        value = item()
        if isinstance(value, (int, float, bool)):
            return value
    raise NotImplementedError(f"cannot store a {type(obj).__name__} in detector state")


_encode = msgspec.msgpack.Encoder(enc_hook=_plain).encode
_decode = msgspec.msgpack.Decoder().decode


class StateVersionError(ValueError):
    """The stored state is of an unknown or old format version (or damaged): re-warm the series."""


class SeriesState(NamedTuple):
    """What a series record holds (``SeriesTracker.to_bytes``)."""

    last_closed: int | None
    incident: dict | None
    detector: SeriesDetector | RiverModelDetector
    policy: AlertPolicy
    #: the last incident's anomalous windows, kept until the next one (what a ``false_positive`` learns)
    record: dict | None = None
    #: ``pipeline.feedback.SeriesFeedback.to_bytes()``: verdicts acted on, patterns learned
    feedback: bytes | None = None


# --- fields <-> objects -------------------------------------------------------------------------

def _detector_fields(det: SeriesDetector | RiverModelDetector) -> list:
    getter = _STATE_GETTERS.get(type(det))
    if getter is None:
        if isinstance(det, RiverModelDetector):
            return [det.kind, det.settings, det.state(), None]
        getter = operator.attrgetter(*det._STATE_FIELDS)
    return [det.kind, det.settings, getter(det), _SHIFT_GET(det.shift)]


def _detector_from(body: list) -> SeriesDetector | RiverModelDetector:
    kind, settings, values, shift = body
    detector = make_detector(kind, settings)
    if isinstance(detector, RiverModelDetector):
        detector.restore(values)
        return detector
    names = detector._STATE_FIELDS
    if len(values) != len(names) or len(shift) != len(_SHIFT_FIELDS):
        raise ValueError("field count")
    for name, value in zip(names, values):
        setattr(detector, name, value)
    ph = detector.shift
    for name, value in zip(_SHIFT_FIELDS, shift):
        setattr(ph, name, value)
    return detector


def _policy_fields(policy: AlertPolicy) -> list:
    return [dict(zip(_POLICY_SETTINGS, _POLICY_SETTINGS_GET(policy))), _POLICY_STATE_GET(policy)]


def _policy_from(body: list) -> AlertPolicy:
    settings, values = body
    if len(values) != len(_POLICY_STATE):
        raise ValueError("field count")
    return AlertPolicy(**settings, **dict(zip(_POLICY_STATE, values)))


# --- blobs --------------------------------------------------------------------------------------

def dump_state(obj: SeriesDetector | RiverModelDetector | AlertPolicy) -> bytes:
    """Serialise a detector or a policy.

    >>> from blipwatch.detectors import make_detector
    >>> det = make_detector("count")
    >>> det.learn_one({"t": 0.0, "value": 12})
    >>> blob = dump_state(det)
    >>> blob.startswith(f"blipwatch-state/{FORMAT_VERSION} ".encode()), len(blob) < 20_000
    (True, True)
    >>> load_state(blob).judge_one({"t": 60.0, "value": 12}) == det.judge_one({"t": 60.0, "value": 12})
    True
    >>> load_state(b"blipwatch-state/0\\n...")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    blipwatch.detectors.state.StateVersionError: stored state has format version 0, this blipwatch reads version ...: re-warm the series
    """
    if isinstance(obj, (SeriesDetector, RiverModelDetector)):
        return _HEADER + _encode(["detector", *_detector_fields(obj)])
    if isinstance(obj, AlertPolicy):
        return _HEADER + _encode(["policy", *_policy_fields(obj)])
    raise TypeError(f"dump_state takes a detector or an AlertPolicy, not {type(obj).__name__}")


def dump_series(last_closed: int | None, incident: dict | None, detector: SeriesDetector | RiverModelDetector,
                policy: AlertPolicy, record: dict | None = None, feedback: bytes | None = None) -> bytes:
    """One blob for a series: its progress, detector and policy (``SeriesTracker.to_bytes``).

    >>> from blipwatch.detectors import make_detector
    >>> blob = dump_series(1767643500000, None, make_detector("rate"), AlertPolicy())
    >>> state = load_series(blob)
    >>> state.last_closed, state.incident, type(state.detector).__name__
    (1767643500000, None, 'RateDetector')
    >>> load_state(blob)
    Traceback (most recent call last):
    ...
    blipwatch.detectors.state.StateVersionError: stored state is a series record, not a detector or policy: re-warm the series
    """
    return _HEADER + _encode(["series", last_closed, incident, _detector_fields(detector),
                              _policy_fields(policy), record, feedback])


def _body(blob: bytes) -> list:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise StateVersionError("stored state has no blipwatch format header: re-warm the series")
    blob = bytes(blob)
    if not blob.startswith(_HEADER):
        if not blob.startswith(_MAGIC) or b"\n" not in blob:
            raise StateVersionError("stored state has no blipwatch format header: re-warm the series")
        header = blob.split(b"\n", 1)[0][len(_MAGIC):].decode("ascii", "replace")
        version, _, layout = header.partition(" ")
        if version != str(FORMAT_VERSION):
            raise StateVersionError(
                f"stored state has format version {version}, this blipwatch reads version "
                f"{FORMAT_VERSION}: re-warm the series")
        raise StateVersionError(
            f"stored state has format version {version} with field layout {layout or '?'}, this "
            f"blipwatch's is {LAYOUT} (its state fields changed): re-warm the series")
    try:
        body = _decode(memoryview(blob)[len(_HEADER):])
    except Exception as exc:
        raise StateVersionError(f"stored state is damaged ({exc.__class__.__name__}): re-warm the series") from None
    if not isinstance(body, list) or not body:
        raise StateVersionError("stored state is damaged (not a tagged array): re-warm the series")
    return body


def load_state(blob: bytes) -> SeriesDetector | RiverModelDetector | AlertPolicy:
    """The detector or policy stored by :func:`dump_state`; StateVersionError if unreadable."""
    body = _body(blob)
    if body[0] == "series":
        raise StateVersionError("stored state is a series record, not a detector or policy: re-warm the series")
    try:
        if body[0] == "detector":
            return _detector_from(body[1:])
        if body[0] == "policy":
            return _policy_from(body[1:])
        raise KeyError(body[0])
    except Exception as exc:  # any damage means the same thing to the caller: re-warm
        raise StateVersionError(f"stored state is damaged ({exc.__class__.__name__}): re-warm the series") from None


def load_series(blob: bytes) -> SeriesState:
    """The series record stored by :func:`dump_series`; StateVersionError if unreadable."""
    body = _body(blob)
    try:
        tag, last_closed, incident, detector, policy, record, feedback = body
        if tag != "series":
            raise KeyError(tag)
        if not (last_closed is None or isinstance(last_closed, (int, float))) or isinstance(last_closed, bool) \
                or not (incident is None or isinstance(incident, dict)) \
                or not (record is None or isinstance(record, dict)) \
                or not (feedback is None or isinstance(feedback, bytes)):
            raise TypeError("progress")
        return SeriesState(last_closed, incident, _detector_from(detector), _policy_from(policy), record, feedback)
    except Exception as exc:  # any damage means the same thing to the caller: re-warm
        raise StateVersionError(f"stored state is damaged ({exc.__class__.__name__}): re-warm the series") from None

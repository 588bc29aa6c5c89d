"""The simulator's events as each tracker sends them (Segment, GA4, Snowplow: the input presets,
``schemas/presets.py``), for ``blipwatch simulate --tracker``, the demo and the preset tests."""

from __future__ import annotations

from blipwatch.tools.simulator import ScenarioError

TRACKERS = ("blipwatch", "segment", "ga4", "snowplow")


def tracker_encoder(tracker: str = "blipwatch"):
    """A function from one generated event to the bytes ``tracker`` sends for it, or None where it
    sends nothing (no ``cart_abandoned`` from a tracker; no ``session_start`` where it has none).

    >>> from blipwatch.tools.simulator import generate_events
    >>> encode = tracker_encoder("ga4")
    >>> event = next(generate_events("none", hours=0.05, sessions_per_minute=20))
    >>> event["event_type"], encode(event)[:26]
    ('page_view', b'{"event_name":"page_view",')
    >>> encode({**event, "event_type": "cart_abandoned"}) is None
    True
    """
    import orjson

    from blipwatch.schemas.presets import encode

    if tracker not in TRACKERS:
        raise ScenarioError(f"unknown tracker {tracker!r}: use one of {', '.join(TRACKERS)}")
    if tracker == "blipwatch":
        return orjson.dumps

    def encoder(event: dict) -> bytes | None:
        document = encode(tracker, event)
        return None if document is None else orjson.dumps(document)

    return encoder

"""The wire contracts: customer event (input), metric point and anomaly alert (outputs),
feedback on incidents and calendar entries (what people on call tell it, ``schemas.feedback``).

This package is the only place that knows the bytes on the wire. JSON Schema files for
consumers in other languages lie beside it: ``customer_event.schema.json``,
``anomaly_alert.schema.json``, ``metric_point.schema.json``, ``feedback.schema.json``,
``calendar_entry.schema.json``, and for the internal partials topic between the two stages of the
worker ``partials.schema.json`` (its codec: ``partials.py``).
"""

from pathlib import Path

from blipwatch.schemas.events import (CANONICAL_EVENT_TYPES, CHANNELS, DEVICES, REASONS, CustomerEvent,
                                      InvalidEvent, decode_event, parse_timestamp_ms, validate_event)
from blipwatch.schemas.outputs import (AnomalyAlert, InvalidDocument, MetricPoint, iso_from_ms, ms_from_iso,
                                       segment_from_label, segment_label, series_key)

SCHEMA_DIR = Path(__file__).parent

__all__ = [
    "CANONICAL_EVENT_TYPES", "CHANNELS", "DEVICES", "REASONS", "CustomerEvent", "InvalidEvent",
    "decode_event", "parse_timestamp_ms", "validate_event", "AnomalyAlert", "InvalidDocument",
    "MetricPoint", "iso_from_ms", "ms_from_iso", "segment_from_label", "segment_label", "series_key",
    "SCHEMA_DIR",
]

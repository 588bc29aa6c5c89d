"""The pure steps of the data flow, no Kafka: the metric catalogue (events -> series), the ingest's
pre-aggregation, event-time windows and watermarks, and each series' lifecycle (tracker, incidents).
"""

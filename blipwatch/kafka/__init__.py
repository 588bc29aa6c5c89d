"""The one place that touches private internals of aiokafka, Faust and mode, each touch with a test
(tests/unit/test_kafka_compat.py) that fails loudly, naming the internal, when an upgrade moves it.

- ``batches``: records to Kafka as record batches of our own (aiokafka's ``BatchBuilder``);
- ``raw_records``: the ingest consumer gets aiokafka's records, not a ``ConsumerRecord`` each;
- ``faust_compat``: Faust's producer, its stop sequence and its consumer's offsets;
- ``tansu_compat``: Faust on the embedded broker (end offsets, fetch wait);
- ``partitioner``, ``clients``: the producers' partitioner, and stopping a short-lived client.
"""

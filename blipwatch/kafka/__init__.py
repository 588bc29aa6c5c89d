"""The one place that touches private internals of aiokafka, Faust and mode, each touch with a test
(tests/unit/test_kafka_compat.py) that fails loudly when an upgrade moves it.
"""

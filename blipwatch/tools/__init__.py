"""Tools beside the service: the bench, the demo, the shop simulator, the evaluation of alerts
against labels, the alerts topic as a person reads it, and the Grafana dashboards' generator.

The worker never imports from here (``tests/unit/test_worker_imports.py``).
"""

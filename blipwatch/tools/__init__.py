"""Tools beside the service: the bench, the demo, the shop simulator and the evaluation of alerts against labels.

The worker never imports from here.
"""

"""Randomized shops with known truth, and an oracle to judge detection against.

``generator``: shops drawn at random (volume, daily and weekly rhythm, funnel, mixes, incidents),
their events in the customer-event contract, their window counts, and the true expected value of
every series. ``oracle``: a CUSUM that knows the true baseline and shift. ``suite``: the
evaluation that runs the real pipeline (``Replay``) over many shops and reports the defaults
against the oracle (``tests/benchmarks/random_suite.py``; docs/detectors.md).
"""

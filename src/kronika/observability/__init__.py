"""Telemetry: Prometheus metrics (:mod:`.metrics`), traces and structured logs.

Any layer may import this package; it imports nothing of Kronika's above
:mod:`kronika.errors` (an import-linter contract keeps it so).
"""

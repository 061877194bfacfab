"""Benchmarks for Kronika, kept out of the default test run.

``python -m benchmarks.store`` measures the event store against raw sqlite3 / psycopg
baselines doing the same work; see ``docs/benchmarks.md``.
"""

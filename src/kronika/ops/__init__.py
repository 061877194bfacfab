"""Operator tooling: doctor, backup and restore, integrity checks, retention and smoke tests.

Sits between the CLI and the server in the layers: it may use the server's settings, the
runtime's admin API and the store, and the CLI presents what it finds.
"""

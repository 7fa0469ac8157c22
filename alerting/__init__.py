"""Prometheus rules and Alertmanager configuration generated in code (issue 6)."""

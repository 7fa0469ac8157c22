"""Grafana dashboards generated in code (issue 6)."""

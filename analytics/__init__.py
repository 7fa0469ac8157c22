"""NØMADE analytics: Prometheus HTTP API client and (later) derivatives and risk scores."""

"""The controller's HTTP client for fetch steps: latency budget, retries, cache and circuit breaker."""

from ivr.http.client import HttpClient

__all__ = ["HttpClient"]

"""The controller's CRM/HTTP client for fetch steps (implemented in `ivr.http`)."""

from ivr.http.client import HttpClient

__all__ = ["HttpClient"]

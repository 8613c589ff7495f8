"""The `records:` section: where call records go (SQLite or PostgreSQL), the spool, retention, webhooks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ivr.config.base import Strict
from ivr.config.types import Duration, Name


class WebhookConfig(Strict):
    name: Name = Field(description="Names the webhook's spool directory (spool_dir/webhook/NAME): keep it "
                       "stable, records waiting there go to this webhook after a restart.")
    url: str = Field(pattern=r"^https?://", description="Endpoint the record is POSTed to as JSON at the end "
                     "of each call.")
    timeout: Duration = Field(5.0, gt=0, description="Time allowed for one POST.")
    retry_max: Duration = Field(60.0, gt=0, description="Longest wait between retries (back-off doubles from "
                                "0.5 s up to this); records wait in the webhook spool meanwhile, none is dropped.")
    flows: tuple[str, ...] = Field((), description="Only calls of these flows (empty: every flow).")
    bearer_env: str | None = Field(None, description="Environment variable holding a bearer token sent as "
                                   "'Authorization: Bearer ...' (never written in the YAML).")


class RecordsConfig(Strict):
    store: Literal["sqlite", "postgresql", "none"] = Field("sqlite", description="Where records are kept: an "
                                                           "SQLite file (one node), PostgreSQL (several nodes), or "
                                                           "none (the call.ended log line only).")
    path: str = Field("records.sqlite3", description="SQLite file, relative to the run directory.")
    dsn: str | None = Field(None, description="PostgreSQL connection string (libpq), e.g. "
                            "'postgresql://ivr@db.example.com/ivr'. A password belongs in ~/.pgpass or PGPASSWORD.")
    spool_dir: str = Field("spool", description="Append-only spool of records not yet stored, relative to the "
                           "run directory. Checked at start: it must be writable with min_free_mb free.")
    min_free_mb: int = Field(64, ge=1, description="Free space the spool's file system needs at start.")
    retention: Duration = Field(90 * 86400.0, gt=0, description="Records older than this are deleted "
                                "(e.g. '90d').")
    batch_wait: Duration = Field(0.2, gt=0, le=10, description="Records are committed in batches at most this "
                                 "often (and the spool fsynced), so an OS crash loses at most this much.")
    batch_size: int = Field(200, ge=1, le=10000, description="Most records per commit.")
    webhooks: tuple[WebhookConfig, ...] = Field((), description="End-of-call webhooks: each gets the record of "
                                                "every call of its flows (all flows when none are listed).")
    tiers: tuple[str, ...] = Field(("platinum", "gold", "silver", "standard"), description="Values of the flow "
                                   "variable `tier` used as metrics labels; any other value is counted as "
                                   "'other' (labels never carry caller data).")

    @model_validator(mode="after")
    def _dsn_for_postgresql(self) -> RecordsConfig:
        if self.store == "postgresql" and not self.dsn:
            raise ValueError("store postgresql needs a dsn")
        names = [w.name for w in self.webhooks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"webhook names must be unique: {', '.join(dupes)}")
        return self

"""The Grafana dashboard is valid JSON and charts only metrics the server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dashboard_uses_exported_metrics_only() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana" / "ivr.json").read_text())
    source = "\n".join(p.read_text() for p in (ROOT / "ivr").rglob("*.py"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = {re.sub(r"_(bucket|sum|count)$", "", n) for e in exprs for n in re.findall(r"\bivr_[a-z_]+", e)}
    assert len(names) >= 10
    missing = sorted(n for n in names if f'"{n}"' not in source)
    assert missing == []

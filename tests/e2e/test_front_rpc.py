"""An external front (docker-compose shape) polled over the socket named by `front.rpc_socket`: `ivr front render`
puts the jsonrpcs socket there, an operator's Kamailio creates it, and the controller reads the refusals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import e2e_config, start_server
from ivrkit import IVR, ROOT
from sippkit import SippRun, sipp

pytestmark = pytest.mark.sip


def health(cfg: dict[str, Any]) -> tuple[int, object]:
    url = f"http://127.0.0.1:{cfg['admin']['port']}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())["front"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["front"]


def test_an_external_front_with_an_rpc_socket_is_polled(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="ivr-rpc-"))  # a Unix socket path must fit in 108 bytes
    try:
        cfg = e2e_config(workers=2)
        cfg["front"] = {"mode": "external", "rpc_socket": str(short / "front.sock"), "poll_interval": "0.3s",
                        "stranger_invite_reply": "403"}  # the outsider's INVITEs are answered (uac_403.xml)
        server = start_server(cfg, tmp_path / "srv")
        try:
            assert server.wait_for(lambda e: e.get("event") == "front.unreachable")  # not started yet: a state
            assert health(cfg) == (503, {"up": False})  # no front, no calls: not healthy
            out = tmp_path / "front"
            rendered = subprocess.run([*IVR, "front", "render", str(server.workdir / "ivr.yaml"), "--out", str(out)],
                                      capture_output=True, text=True, timeout=60, cwd=ROOT)
            assert rendered.returncode == 0, rendered.stderr
            kamailio = subprocess.Popen(["kamailio", "-DD", "-E", "-f", str(out / "kamailio.cfg")], cwd=out,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                server.wait_for(lambda e: e.get("event") == "front.reachable", 20, what="front.reachable")
                assert health(cfg) == (200, {"up": True})
                run = sipp(server.sip_port, "front/uac_403.xml", service="100", tag="ext-outsider", workdir=tmp_path,
                           calls=2, concurrency=2, rate=100, local_ip="127.0.0.2")
                assert isinstance(run, SippRun) and run.returncode == 0, run
                line = server.wait_for(lambda e: e.get("event") == "front.refusals", 20, what="front.refusals")
                assert line["refused"] == {"403_nontrunk": 2}
                url = f"http://127.0.0.1:{cfg['admin']['port']}/metrics"
                with urllib.request.urlopen(url, timeout=5) as resp:
                    text = resp.read().decode()
                assert 'ivr_front_refusals_total{code="403",source="nontrunk"} 2' in text and "ivr_front_up 1" in text
            finally:
                os.killpg(kamailio.pid, signal.SIGTERM)
                kamailio.wait(timeout=10)
        finally:
            server.stop()
    finally:
        shutil.rmtree(short, ignore_errors=True)

"""Call records end to end: a PIN typed into a sensitive gather is nowhere (debug output, /calls, the stored
row, the database files); PostgreSQL killed and restarted in the middle of a load run of real calls loses
no record; an unusable spool stops the server at start."""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import QUEUE_HOST, e2e_config, start_server
from ivrkit import IVR, ROOT, IvrServer, free_port
from pgkit import PgServer, free_tcp_port
from recordkit import LOG_KEYS, assert_rows_match_lines, sqlite_rows, transferred
from sippkit import SippRun, collect, sipp

pytestmark = pytest.mark.sip

PIN = "908172"
PIN_FLOW: dict[str, Any] = {
    "description": "A PIN into a sensitive gather, a copy of it, hold music, then a queue that is sent the PIN.",
    "steps": [
        {"id": "ask_pin", "type": "gather", "prompts": ["enter_account"], "variable": "code", "max_digits": 8,
         "terminator": "#", "sensitive": True, "on_exhausted": "bye"},
        {"id": "copy", "type": "set", "values": {"echo": "code {{code}}"}},
        {"id": "hold", "type": "play", "prompts": ["hold_music", "hold_music"], "interruptible": False},
        {"id": "to_vault", "type": "transfer", "queue": "vault", "on_fail": "bye"},
        {"id": "bye", "type": "hangup", "prompts": ["goodbye"]}],
}


def admin(server: IvrServer, path: str) -> str:
    url = f"http://127.0.0.1:{server.config['admin']['port']}{path}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.1)


class Hook(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        Hook.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/ivr/calls"
    httpd.shutdown()
    httpd.server_close()


def test_a_pin_typed_into_a_sensitive_gather_leaves_no_trace(tmp_path: Path, webhook: str) -> None:
    cfg = e2e_config()
    cfg["flows"]["pin"] = PIN_FLOW
    cfg["numbers"]["600"] = "pin"
    cfg["queues"]["vault"] = {"uri": f"sip:vault@{QUEUE_HOST}", "uri_params": {"code": "{{code}}"}}
    cfg["logging"] = {"level": "debug", "format": "json"}
    cfg["records"] = {"webhooks": [{"name": "crm", "url": webhook, "flows": ["pin"]},
                                   {"name": "other", "url": webhook, "flows": ["menu"]}]}
    server = start_server(cfg, tmp_path / "srv")
    try:
        caller = sipp(server.sip_port, "dtmf_info_refer.xml", service="600", tag="pin", workdir=tmp_path,
                      background=True, variables={"caller": "+15557000001", "digits": f"{PIN}#",
                                                  "expected_refer": f"sip:vault@{QUEUE_HOST};code={PIN}"})
        assert isinstance(caller, subprocess.Popen)
        snapshots: list[str] = []

        def in_hold() -> bool:
            snapshots.append(admin(server, "/calls"))
            return '"copy:set"' in snapshots[-1]

        wait_until(in_hold)  # the call is live, past the gather, in the hold music
        output, _ = caller.communicate(timeout=90)
        run = collect(caller.returncode, output, tmp_path, "pin")
        assert run.returncode == 0, run.describe()
        line = server.call_ended("pin-")
        wait_until(lambda: 'ivr_call_records_total{flow="pin"' in admin(server, "/metrics"))
        metrics = admin(server, "/metrics")
    finally:
        assert server.stop() == 0
    assert line["outcome"] == transferred("vault", f"sip:vault@{QUEUE_HOST};code=%2A%2A%2A")  # SIPp got the PIN
    assert line["inputs"] == [{"step": "ask_pin", "digits": "***", "masked": True}]
    assert line["variables"] == {"code": "***", "echo": "***"}
    assert any(e.get("event") == "sip.call.digit" for e in server.lines)  # debug lines were on
    assert all(PIN not in text for text in snapshots) and PIN not in metrics
    assert 'ivr_call_records_total{flow="pin",outcome="transfer",queue="vault",tier="none"} 1' in metrics
    assert PIN not in "".join(server.raw)
    run_dir = tmp_path / "srv" / "run"
    [row] = sqlite_rows(run_dir / "records.sqlite3")
    assert row["uid"] == line["uid"]
    wait_until(lambda: len(Hook.bodies) == 1)  # delivered before the server stopped, or from its spool
    assert json.loads(Hook.bodies[0]) == {k: v for k, v in line.items() if k not in LOG_KEYS}
    assert PIN.encode() not in Hook.bodies[0]
    for path in run_dir.rglob("*"):  # the database, its WAL, the spool, the front's files
        if path.is_file():
            assert PIN.encode() not in path.read_bytes(), path


def test_postgresql_killed_and_restarted_during_a_load_run_loses_no_record(tmp_path: Path) -> None:
    pg = PgServer(free_tcp_port()).start()
    calls = 48  # 12 stored, 18 ended while the database is down, 18 after its restart
    try:
        cfg = e2e_config(workers=3)
        cfg["records"] = {"store": "postgresql", "dsn": pg.dsn, "batch_wait": "100ms", "batch_size": 20}
        server = start_server(cfg, tmp_path / "srv")
        try:
            caller = sipp(server.sip_port, "dtmf_info_refer.xml", service="100", tag="pgload", workdir=tmp_path,
                          calls=calls, concurrency=10, rate=8, background=True, timeout=120,
                          variables={"caller": "+15551000003", "digits": "",
                                     "expected_refer": f"sip:gold@{QUEUE_HOST}"})
            assert isinstance(caller, subprocess.Popen)
            ended = lambda: len(server.events("call.ended"))  # noqa: E731
            wait_until(lambda: ended() >= 12, timeout=120)
            pg.kill()
            server.wait_for(lambda e: e.get("event") == "records.sink_down", timeout=60)
            wait_until(lambda: ended() >= 30, timeout=120)
            pg.start()
            output, _ = caller.communicate(timeout=300)
            run = collect(caller.returncode, output, tmp_path, "pgload")
            assert run.returncode == 0, run.describe()
            wait_until(lambda: ended() >= calls, timeout=60)
            server.wait_for(lambda e: e.get("event") == "records.sink_recovered", timeout=60)
        finally:
            assert server.stop(check_records=False) == 0
        lines = server.events("call.ended")
        assert len(lines) == calls
        assert_rows_match_lines(pg.rows(), lines)
        assert not list((tmp_path / "srv" / "run" / "spool" / "store").glob("*.jsonl"))
    finally:
        pg.cleanup()


def test_records_spooled_when_the_server_is_killed_are_stored_at_its_next_start(tmp_path: Path) -> None:
    cfg = e2e_config()
    cfg["records"] = {"batch_wait": "10s"}  # the records wait in the spool, not yet sealed nor committed
    first = start_server(cfg, tmp_path / "srv")
    run = sipp(first.sip_port, "dtmf_info_refer.xml", service="300", tag="crash", workdir=tmp_path, calls=4,
               concurrency=4, rate=20, variables={"caller": "+15553000001", "digits": "1",
                                                  "expected_refer": f"sip:sales@{QUEUE_HOST}"})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    lines = [first.call_ended(f"crash-{i}-") for i in range(1, 5)]
    assert first.proc is not None
    first.proc.kill()  # SIGKILL: no flush, no shutdown
    first.proc.wait()
    run_dir = tmp_path / "srv" / "run"
    assert sqlite_rows(run_dir / "records.sqlite3") == []
    assert list((run_dir / "spool" / "store").glob("*.jsonl"))
    again = copy.deepcopy(cfg)  # the same run directory; fresh ports in case the old worker lingers
    again["sip"].update(listen_port=free_port(), rtp_port_start=cfg["sip"]["rtp_port_start"] + 2000)
    again["admin"]["port"] = free_port()
    again["demo_crm"]["port"] = port = free_port()
    again["http"]["crm"]["base_url"] = f"http://127.0.0.1:{port}"
    second = start_server(again, tmp_path / "srv")
    assert second.wait_for(lambda e: e.get("event") == "records.ready")["spooled"] >= 1
    assert second.stop(check_records=False) == 0
    assert_rows_match_lines(sqlite_rows(run_dir / "records.sqlite3"), lines)


def test_an_unwritable_spool_stops_the_server_at_start(tmp_path: Path) -> None:
    cfg = e2e_config()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cfg["records"] = {"spool_dir": str(blocker / "spool")}
    (tmp_path / "ivr.yaml").write_text(json.dumps(cfg))
    proc = subprocess.run([*IVR, "run", str(tmp_path / "ivr.yaml"), "--run-dir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    failed = [json.loads(x) for x in proc.stderr.splitlines() + proc.stdout.splitlines() if "start_failed" in x]
    assert failed and "not writable" in failed[0]["error"] and str(blocker) in failed[0]["error"]

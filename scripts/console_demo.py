"""A short demo run for the README: the real server on loopback with free ports, ~10 calls placed by SIPp through
the default `vip_routing` flow (gold, platinum and regular callers from the demo CRM, one caller known only by
account number, one who hangs up mid-prompt), a screenshot of the console in headless Chromium while a second
wave is up, then `ivr report` on what was stored. Run by scripts/screenshot-console."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "tests")]

from browser import chromium, wait_for  # noqa: E402
from ivrkit import IVR, IvrServer, default_config, free_port  # noqa: E402
from sippkit import collect, sipp  # noqa: E402

QUEUES = "127.0.0.1:5070"
# (tag, caller, digits, calls, scenario, expected queue)
WAVE_1 = [("gold", "+15551000002", "", 3, "dtmf_info_refer.xml", "gold"),
          ("platinum", "+15552000001", "", 3, "dtmf_info_refer.xml", "platinum"),
          ("regular", "+15553000001", "", 2, "dtmf_info_refer.xml", "default"),
          ("account", "+15559990001", "200002#", 1, "dtmf_info_refer.xml", "platinum"),
          ("hangup", "+15553000002", "", 1, "hangup_during_prompt.xml", None)]
WAVE_2 = [("live", "+15551000004", "", 3, "dtmf_info_refer.xml", "gold")]


def config() -> dict[str, object]:
    cfg = default_config()
    cfg["sip"].update(listen_port=free_port(), workers=3, worker_base_port=free_port(), rtp_port_start=36000,
                      drain_timeout="5s")
    cfg["front"] = {"mode": "auto"}
    cfg["admin"] = {"enabled": True, "host": "127.0.0.1", "port": free_port()}
    demo = free_port()
    cfg["demo_crm"].update(enabled=True, port=demo)
    cfg["http"]["crm"]["base_url"] = f"http://127.0.0.1:{demo}"
    cfg["logging"] = {"level": "info", "format": "json"}
    return cfg


def place(server: IvrServer, wave: list[tuple[str, str, str, int, str, str | None]],
          work: Path) -> list[tuple[str, subprocess.Popen[str]]]:
    runs = []
    for tag, caller, digits, calls, scenario, queue in wave:
        variables = {"caller": caller}
        if queue:
            variables.update(digits=digits, expected_refer=f"sip:{queue}@{QUEUES}")
        proc = sipp(server.sip_port, scenario, service="100", tag=tag, workdir=work, calls=calls,
                    concurrency=calls, rate=5, background=True, timeout=90, variables=variables)
        assert isinstance(proc, subprocess.Popen)
        runs.append((tag, proc))
    return runs


def finish(runs: list[tuple[str, subprocess.Popen[str]]], work: Path) -> None:
    for tag, proc in runs:
        output, _ = proc.communicate(timeout=150)
        run = collect(proc.returncode, output, work, tag)
        if run.returncode != 0:
            raise SystemExit(f"sipp {tag} failed:\n{run.describe()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "docs" / "console.png"), help="screenshot (%(default)s)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ivr-console-demo-"))
    server = IvrServer(config(), work).start()
    url = f"http://127.0.0.1:{server.config['admin']['port']}/console"  # type: ignore[index]
    try:
        with chromium(1400, 1500) as driver:
            driver.get(url)
            wait_for(lambda: driver.find_element("id", "feed").text == "live", what="the live feed")
            finish(place(server, WAVE_1, work), work)
            time.sleep(1.0)  # one store batch
            second = place(server, WAVE_2, work)
            wait_for(lambda: len(driver.find_elements("css selector", "#live tbody tr")) >= 3, what="live calls")
            wait_for(lambda: driver.find_elements("css selector", "#chart-queue rect.bar"), what="chart bars")
            driver.save_screenshot(args.out)
            print(f"screenshot: {args.out}", file=sys.stderr)
            finish(second, work)
    finally:
        server.stop()
    config_path, run_dir = work / "ivr.yaml", work / "run"
    report = subprocess.run([*IVR, "report", str(config_path), "--run-dir", str(run_dir)], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    print(f"$ .venv/bin/ivr report {config_path.name} --run-dir run")
    print(report.stdout, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

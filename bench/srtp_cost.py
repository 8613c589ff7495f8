"""What SRTP costs the workers: the same calls with and without it, from the same client over TLS.

`ivr run` on the bench config (2 workers behind the managed front, TLS on with a throwaway certificate,
the demo trunk on transport tls with SRTP optional). `--calls` baresip callers (one process each) dial the
bench-only hold flow (901: prompts in a loop, audio both ways) and hold for `--seconds`: first with
`mediaenc=srtp-mand` (SRTP answered), then with no media encryption (plain RTP answered by the same trunk).
Reported: the workers' CPU (utime+stime from /proc) per call-second in each phase, and the difference.
127.0.0.1 only; every wait is bounded.

    .venv/bin/python bench/srtp_cost.py --calls 6 --seconds 20 [--out bench/results/srtp_cost.json]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import rig

sys.path[:0] = [str(rig.ROOT / "tests"), str(rig.ROOT / "tests" / "security")]
from tlskit import Baresip, Pki, baresip_port, make_pki  # noqa: E402


def free_ports() -> tuple[rig.Ports, int]:
    """Ports clear of other runs on this shared machine (the bench defaults may be taken)."""
    ports = rig.Ports(sip=baresip_port(), worker_base=baresip_port(), rtp_start=30000 + 80 * random.randrange(0, 300),
                      admin=baresip_port(), crm=baresip_port())
    return ports, baresip_port()


def tls_on(pki: Pki, tls_port: int) -> Any:
    def tweak(data: dict[str, Any]) -> None:
        data["front"]["tls"] = {"enabled": True, "port": tls_port, "certificate": str(pki.cert),
                                "private_key": str(pki.key)}
        for trunk in data["trunks"]:
            trunk.update(transport="tls", srtp="optional")

    return tweak


def phase(server: rig.Server, pki: Pki, tls_port: int, work: Path, args: argparse.Namespace,
          mediaenc: str | None) -> dict[str, float]:
    tone = work / "tone.wav"  # baresip hangs up when its aufile source ends: a source longer than the hold
    if not tone.exists():
        subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(tone), "synth",
                        str(args.seconds + 30), "sine", "440", "vol", "0.3"], check=True, timeout=60)
    name = mediaenc or "plain"
    callers = [Baresip(work / f"{name}{i}", ip=rig.HOST, ca=pki.ca, source_wav=tone, mediaenc=mediaenc)
               for i in range(args.calls)]
    try:
        for caller in callers:
            caller.start().dial(f"sip:{rig.HOLD_NUMBER}@{rig.HOST}:{tls_port};transport=tls")
        for caller in callers:
            caller.wait_log(r"Call established", 30)
            if mediaenc:
                caller.wait_log(r"SRTP is Enabled", 5)
        time.sleep(2.0)  # let every stream settle before the window
        before, t0 = server.cpu(), time.monotonic()
        time.sleep(args.seconds)
        after, wall = server.cpu(), time.monotonic() - t0
        assert all("terminated" not in c.log for c in callers), "a call ended inside the window"
    finally:
        for caller in callers:
            caller.stop()
    workers = after["workers"] - before["workers"]
    return {"calls": args.calls, "window_s": round(wall, 1), "workers_cpu_s": round(workers, 3),
            "workers_ms_per_call_second": round(1000 * workers / (args.calls * wall), 3),
            "kamailio_cpu_s": round(after["kamailio"] - before["kamailio"], 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=6, help="concurrent callers per phase (2 workers hold 8)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured hold per phase")
    p.add_argument("--out", type=Path, help="write the result as JSON here too")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="srtp-cost-") as tmp:
        work = Path(tmp)
        pki = make_pki(work / "pki")
        ports, tls_port = free_ports()
        server = rig.Server(2, work / "server", ports=ports, tweak=tls_on(pki, tls_port)).start()
        try:
            srtp = phase(server, pki, tls_port, work, args, "srtp-mand")
            time.sleep(2.0)
            plain = phase(server, pki, tls_port, work, args, None)
        finally:
            server.stop()
    delta = srtp["workers_ms_per_call_second"] - plain["workers_ms_per_call_second"]
    result = {"srtp": srtp, "plain": plain, "srtp_extra_ms_per_call_second": round(delta, 3),
              "loadavg_after": rig.loadavg()}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

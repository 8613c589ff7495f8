"""A node behind a tier (front.tier_source): the carrier's identity the tier matched (X-IVR-Trunk) passes to the
node's workers only from the tier's address, only when it names one of the node's trunks; anyone else's header
is removed and the call is named by the node's own trunk ACL. Real Kamailio, SIPp stand-in workers, raw INVITEs
from 127.0.0.2 (the tier), .3 (a trunk that is no tier) and .4 (a stranger)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import StartFront
from front_harness import KAMAILIO, make_config, sip_request, wait_until
from pydantic import ValidationError

from ivr.front.kamailio import render

TIER = "127.0.0.2"
OTHER_TRUNK = "127.0.0.3"
STRANGER = "127.0.0.4"
TRUNKS = [{"name": "link", "sources": [f"{TIER}/32", f"{OTHER_TRUNK}/32"]},
          {"name": "carrier-b", "sources": ["192.0.2.1/32"], "transport": "tcp", "srtp": "optional"}]


def test_the_trust_is_rendered_only_for_a_node_behind_a_tier(tmp_path: Path) -> None:
    plain = render(make_config(trunks=TRUNKS), tmp_path / "plain").cfg.read_text()
    assert "tier_trunk" not in plain
    files = render(make_config(trunks=TRUNKS, front={"tier_source": f"{TIER}/32"}), tmp_path / "node")
    cfg = files.cfg.read_text()
    outside = cfg[cfg.index("route[OUTSIDE]"):cfg.index("route[WITHINDLG]")]
    assert outside.index("$var(tier_trunk) = $hdr(X-IVR-Trunk)") < outside.index("remove_hf_re")
    assert '=~ "^(link|carrier-b)$"' in outside and 'allow_source_address("2")' in outside
    trunk = cfg[cfg.index("route[TRUNK]"):cfg.index("route[DISPATCH]")]
    assert trunk.index("$avp(trunk) = $var(tier_trunk)") < trunk.index('append_hf("X-IVR-Trunk: $avp(trunk)')
    # the carrier's transport rule is the tier's to check; its SRTP rule still applies on the node
    assert trunk.index('if ($var(tier_trunk) == "")') < trunk.index('$pr != "tcp"')
    assert "X-IVR-Srtp: optional" in trunk
    assert f"2 {TIER} 32 0 tier" in files.extra[0].read_text()
    check = subprocess.run([KAMAILIO, "-c", "-f", str(files.cfg)], capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stderr[-3000:]


@pytest.mark.sip
async def test_only_the_tier_names_the_carrier(front: StartFront) -> None:
    _, uas = await front(trunks=TRUNKS, front={"tier_source": f"{TIER}/32"})

    def seen() -> list[str]:
        return [trunk for w in uas for _, trunk in w.calls()]

    cases = [(TIER, "carrier-b", "carrier-b"),    # the tier passes the carrier it matched on
             (TIER, "nobody", "link"),            # a name the node does not know: its own ACL's name
             (OTHER_TRUNK, "carrier-b", "link"),  # a trunk that is no tier cannot choose its trunk
             (TIER, "", "link")]                  # no header: as before
    for i, (source, claimed, expected) in enumerate(cases):
        answer = sip_request(source=source, headers={"X-IVR-Trunk": claimed}, wait=3.0)
        assert answer is not None and answer.startswith("SIP/2.0 200"), answer
        wait_until(lambda n=i + 1: len(seen()) == n, 3.0, f"INVITE {i + 1} at a stand-in worker")
        assert seen()[-1] == expected, (source, claimed, seen())
    # a stranger, even claiming the tier's header, gets silence and reaches no worker
    assert sip_request(source=STRANGER, headers={"X-IVR-Trunk": "carrier-b"}, wait=1.0) is None
    assert len(seen()) == len(cases)


def test_a_tier_source_among_no_trunk_sources_is_refused() -> None:
    with pytest.raises(ValidationError, match="among no trunk's sources"):
        make_config(trunks=TRUNKS, front={"tier_source": "127.0.0.9/32"})
    make_config(trunks=[{"name": "link", "sources": ["127.0.0.0/24"]}], front={"tier_source": TIER})  # within

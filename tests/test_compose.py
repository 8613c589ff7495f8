"""docker-compose.yml is validated, not run, here (no Docker on these machines): schema and referenced files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).resolve().parent / "compose_schema" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_header_says_it_is_validated_not_run() -> None:
    head = COMPOSE.read_text().splitlines()[:6]
    assert any("VALIDATED, NOT RUN" in line for line in head)


def test_matches_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_services_we_need_are_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"front-config", "front", "ivr", "democrm"} <= set(services)
    assert services["front"]["depends_on"]["front-config"]["condition"] == "service_completed_successfully"
    render = services["front-config"]["command"]
    out = render[render.index("--out") + 1]
    assert services["front"]["command"] == ["-f", f"{out}/kamailio.cfg"]
    assert services["ivr"]["environment"]["IVR_FRONT_MODE"] == "external"
    assert services["democrm"]["command"][:3] == ["python", "-m", "ivr.democrm"]


def _builds(compose: dict[str, Any]) -> list[tuple[Path, Path]]:
    found = []
    for service in compose["services"].values():
        build = service.get("build")
        if isinstance(build, str):
            found.append((ROOT / build, ROOT / build / "Dockerfile"))
        elif isinstance(build, dict):
            context = ROOT / build.get("context", ".")
            found.append((context, context / build.get("dockerfile", "Dockerfile")))
    return found


def test_referenced_files_exist(compose: dict[str, Any]) -> None:
    for service_name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{service_name}: bind mount source {source} is missing"
            else:
                assert source in compose.get("volumes", {}), f"{service_name}: volume {source} is not declared"
    builds = _builds(compose)
    assert builds
    for context, dockerfile in builds:
        assert context.is_dir() and dockerfile.is_file(), dockerfile
        for line in dockerfile.read_text().splitlines():
            match = re.match(r"^COPY\s+(?!--)(.+)\s+\S+$", line.strip())
            for source in match.group(1).split() if match else []:
                assert (context / source).exists(), f"{dockerfile.name}: COPY source {source} is missing"


def test_the_tier_profile_puts_a_tier_over_two_nodes_sharing_one_database(compose: dict[str, Any]) -> None:
    """Profile "tier": the addresses the services are given agree with each other and with config/ivr.yaml
    loaded with each service's environment (the tier's node list, each node's trunk source and records DSN)."""
    from ivr.config.load import load_config

    services = compose["services"]
    tiered = {name for name, service in services.items() if "tier" in service.get("profiles", [])}
    assert tiered == {"tier", "node1", "node2", "records-db"}
    assert not any(services[name].get("profiles") for name in ("front-config", "front", "ivr", "democrm"))
    db_host = services["records-db"]["command"][-1].split("=", 1)[1]
    tier = load_config(ROOT / "config" / "ivr.yaml", {**services["tier"]["environment"]},
                       check_files=False).config.tier
    assert tier is not None and services["tier"]["command"][:3] == ["ivr", "tier", "run"]
    nodes = {}
    for name in ("node1", "node2"):
        env = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in services[name]["environment"].items()}
        config = load_config(ROOT / "config" / "ivr.yaml", env, check_files=False).config
        assert config.front.mode == "managed"  # each node runs its own front
        assert f"{tier.listen_host}/32" in config.trunks[0].sources  # the tier is the node's trunk
        assert config.records.store == "postgresql" and f"@{db_host}:" in str(config.records.dsn)
        assert config.sip.worker_host == config.sip.listen_host == config.admin.host
        nodes[name] = (f"{config.sip.listen_host}:{config.sip.listen_port}", config.sip.rtp_port_start)
    assert [n.address for n in tier.nodes] == [nodes["node1"][0], nodes["node2"][0]]
    assert abs(nodes["node1"][1] - nodes["node2"][1]) >= 4 * 40 * 2  # RTP ranges apart (4 workers x 40 ports)

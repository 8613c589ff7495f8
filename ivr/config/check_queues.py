"""Cross-checks of queues and transfer targets: fixed URIs carry no templates, variable targets need an allow-list."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from ivr.config.model import IvrConfig
from ivr.config.steps import TransferStep

if TYPE_CHECKING:
    from ivr.config.load import YamlPath

Severity = Literal["error", "warning"]
_TEMPLATE = re.compile(r"\{\{.*?\}\}")
_SIP_HOST = re.compile(r"^(sips?):(?:[^@;?]*@)?(\[[^\]]+\]|[^:;?]+)(?::(\d+))?")


def queue_issues(config: IvrConfig) -> Iterator[tuple[YamlPath, str, Severity]]:
    """Problems of queues and the transfer steps that use them."""
    for name, queue in config.queues.items():
        fixed: list[tuple[YamlPath, str]] = [(("queues", name, "uri"), queue.uri or "")]
        fixed += [(("queues", name, "targets", i, "uri"), t.uri) for i, t in enumerate(queue.targets)]
        fixed += [(("queues", name, "allow", i), p) for i, p in enumerate(queue.allow)]
        for path, uri in fixed:
            if _TEMPLATE.search(uri) or "{{" in uri:
                yield path, (f"'{uri}' is a fixed URI and is sent literally: a target built from variables "
                             "belongs in a transfer step's `target`, inside this queue's `allow` patterns"), "error"
        if queue.strategy != "ordered" and len(queue.all_targets) < 2:
            yield ("queues", name, "strategy"), f"strategy '{queue.strategy}' with one target: it is ordered", \
                "warning"
    yield from _loops_back(config)
    for flow_name, flow in config.flows.items():
        for i, step in enumerate(flow.steps):
            if isinstance(step, TransferStep):
                yield from _step_target(config, step, ("flows", flow_name, "steps", i))


def _step_target(config: IvrConfig, step: TransferStep, path: YamlPath) -> Iterator[tuple[YamlPath, str, Severity]]:
    queue = config.queues.get(step.queue)
    if queue is None:
        return
    if step.target is None:
        if not queue.all_targets:
            yield path + ("queue",), (f"queue '{step.queue}' has only an allow-list (no uri or targets): "
                                      "this step needs a `target`"), "error"
        return
    if not queue.allow:
        yield path + ("target",), (f"a variable target needs an allow-list: queue '{step.queue}' has no "
                                   "`allow` patterns, so every call would skip it"), "error"
    if not _TEMPLATE.search(step.target):
        yield path + ("target",), "target has no {{variable}}: a fixed target belongs in the queue", "warning"
    elif queue.allow and _never_allowed(step.target, queue.allow):
        yield path + ("target",), (f"'{step.target}' can never match the allow patterns of queue "
                                   f"'{step.queue}' ({', '.join(queue.allow)}): every call would skip it"), "warning"


def _never_allowed(template: str, patterns: tuple[str, ...]) -> bool:
    """True when the template's fixed parts already rule out every pattern (e.g. another host); a template that
    is all variable ('{{manager_sip}}') cannot be judged here."""
    from ivr.flow.targets import allowed

    sample = _TEMPLATE.sub("x", template)
    return sample.startswith(("sip:", "sips:")) and "@" in sample and not allowed(sample, patterns)


def _loops_back(config: IvrConfig) -> Iterator[tuple[YamlPath, str, Severity]]:
    """Targets at the IVR's own SIP address: the transfer would come straight back in."""
    sip = config.sip
    own = {(sip.listen_host, sip.listen_port)}
    if sip.workers > 1:
        own |= {(sip.worker_host, sip.worker_base_port + i) for i in range(sip.workers)}
    for name, queue in config.queues.items():
        for i, target in enumerate(queue.all_targets):
            match = _SIP_HOST.match(target.uri)
            if not match:
                continue
            scheme, host, port = match.groups()
            if (host.strip("[]"), int(port) if port else 5061 if scheme == "sips" else 5060) in own:
                where: YamlPath = ("queues", name, "uri") if queue.uri else ("queues", name, "targets", i, "uri")
                yield where, (f"queue '{name}' points at the IVR's own SIP address: the transfer would loop back "
                              "into the IVR"), "warning"

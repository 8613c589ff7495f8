"""Call counts by flow, queue, tier and menu option, from records: the Prometheus counters and `ivr report`.

Every label value comes from the config, never from the caller: a flow, queue or menu step the config does
not name, or a tier outside `records.tiers`, is counted as "other"; a menu result that is not one of the
step's options is one of the fixed results (invalid, no_input, exhausted, abandoned, ...).
"""

from __future__ import annotations

from collections.abc import Iterator

from ivr.config.model import IvrConfig
from ivr.config.steps import MenuStep
from ivr.metrics import Metrics
from ivr.records.model import CallRecord

TIER_VARIABLE = "tier"
"""The flow variable holding the caller's tier (the records' `tier` column, a metrics label)."""
OTHER = "other"
NONE = "none"
_TRANSFER_RESULTS = frozenset({"ok", "pending", "no_notify", "unknown_queue", "refer_not_supported", "abandoned",
                               "max_duration", "empty", "invalid", "disallowed"})
"""Transfer attempt results kept as labels; rejected_<code> counts as "rejected", anything else as "other"."""
_MENU_RESULTS = frozenset({"invalid", "no_input", "exhausted", "abandoned", "max_duration", "loop_detected"})


def tier_label(config: IvrConfig, variables: dict[str, str]) -> str:
    value = variables.get(TIER_VARIABLE)
    if value is None or value == "":
        return NONE
    return value if value in config.records.tiers else OTHER


def queue_label(config: IvrConfig, queue: str | None) -> str:
    if queue is None:
        return NONE
    return queue if queue in config.queues else OTHER


def flow_label(config: IvrConfig, flow: str) -> str:
    return flow if flow in config.flows else OTHER


def menu_choices(config: IvrConfig, flow: str, path: list[str] | tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(menu "flow/step", option or result) for each menu step the path went through."""
    for entry in path:
        where, _, result = entry.rpartition(":")
        step_flow, _, step_id = where.rpartition("/")
        step_flow = step_flow or flow
        steps = config.flows[step_flow].steps if step_flow in config.flows else ()
        step = next((s for s in steps if s.id == step_id), None)
        if isinstance(step, MenuStep):
            option = result if result in step.options or result in _MENU_RESULTS else OTHER
            yield f"{step_flow}/{step_id}", option


def transfer_result_label(result: str) -> str:
    if result.startswith("rejected_"):
        return "rejected"
    return result if result in _TRANSFER_RESULTS else OTHER


def is_fallback(record: CallRecord) -> bool:
    """The call needed a fallback: a lookup failed or a transfer attempt did not land."""
    return any(f.outcome != "ok" for f in record.fetches) or any(t.result != "ok" for t in record.transfers)


def count_call(metrics: Metrics, config: IvrConfig, record: CallRecord) -> None:
    flow = flow_label(config, record.flow)
    queue = queue_label(config, record.queue)
    tier = tier_label(config, dict(record.variables))
    metrics.inc("ivr_call_records_total", flow=flow, queue=queue, tier=tier, outcome=record.outcome.kind)
    if is_fallback(record):
        metrics.inc("ivr_call_fallbacks_total", flow=flow, tier=tier)
    for menu, option in menu_choices(config, record.flow, record.path):
        metrics.inc("ivr_menu_choices_total", menu=menu, option=option)
    for attempt in record.transfers:
        metrics.inc("ivr_transfer_attempts_total", queue=queue_label(config, attempt.queue),
                    result=transfer_result_label(attempt.result))
    if record.timings.to_transferred_ms is not None:
        metrics.observe("ivr_time_to_transfer_ms", record.timings.to_transferred_ms, flow=flow, queue=queue)

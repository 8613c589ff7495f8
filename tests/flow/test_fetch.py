"""Fetch: request rendering, mapping, required fields, failures, the safety deadline, filler."""

from __future__ import annotations

from typing import Any

import pytest
from flowkit import T0, call, connect, make_config
from recordkit import abandoned

from ivr.flow.commands import Fetch, HangUp, Play, StopPlayback
from ivr.flow.events import CallEnded, FetchCompleted, FetchFailed


def fetch(**extra: Any) -> dict[str, Any]:
    return {"id": "lookup", "type": "fetch", "endpoint": "crm", "path": "/customers/{{caller}}",
            "query": {"phone": "{{caller}}", "x": "a b"}, "headers": {"X-Trace": "{{call_id}}\r\nEvil: 1"},
            "map": {"tier": "data[0].tier", "n": "data[0].n", "name": "data[0].name", "tags": "data[0].tags"},
            "on_error": "failed", "next": "worked"} | extra


FLOW_TAIL = [{"id": "worked", "type": "hangup", "reason": "worked"},
             {"id": "failed", "type": "hangup", "reason": "failed"}]


def start(**extra: Any) -> Any:
    return connect(make_config([fetch(**extra), *FLOW_TAIL]), info=call(caller="+1 555/0"))


def test_fetch_command_is_rendered() -> None:
    session, commands = start(method="POST", body={"who": "{{caller}}", "n": 1})
    assert commands == [Fetch(
        request_id=1, endpoint="crm", method="POST", path="/customers/%2B1%20555%2F0",
        query=(("phone", "+1 555/0"), ("x", "a b")), headers=(("X-Trace", "c1Evil: 1"),),
        body={"who": "+1 555/0", "n": 1}, budget_s=2.0, log_path="/customers/%2B1%20555%2F0")]
    assert session.deadline == T0 + 2.5


def test_a_secret_in_the_path_is_masked_for_the_logs() -> None:
    flow = [{"id": "s", "type": "set", "values": {"pin": "4711"}}, fetch(path="/verify/{{pin}}"), *FLOW_TAIL]
    _, commands = connect(make_config(flow))
    [command] = commands
    assert isinstance(command, Fetch)
    assert command.path == "/verify/4711" and command.shown_path == "/verify/%2A%2A%2A"


def test_step_timeout_overrides_endpoint_budget() -> None:
    session, commands = start(timeout="800ms")
    assert commands[0].budget_s == 0.8  # type: ignore[union-attr]
    assert session.deadline == pytest.approx(T0 + 1.3)


def test_success_maps_and_stringifies() -> None:
    session, _ = start()
    body = {"data": [{"tier": "gold", "n": 3, "name": None, "tags": ["a", 1]}]}
    assert session.handle(FetchCompleted(1, 200, body, elapsed_ms=12.5, cached=True), T0 + 0.1) == [
        HangUp("worked")]
    record = session.record().as_dict()
    assert record["variables"] == {"tier": "gold", "n": "3", "tags": '["a",1]'}
    assert record["path"] == ["lookup:ok", "worked:hangup"]
    assert record["fetches"] == [{"step": "lookup", "endpoint": "crm", "outcome": "ok", "reason": None,
                                  "status": 200, "elapsed_ms": 12.5, "cached": True}]


def test_mapping_unsets_absent_values() -> None:
    flow = [{"id": "set", "type": "set", "values": {"tier": "stale"}}, fetch(), *FLOW_TAIL]
    session, _ = connect(make_config(flow))
    session.handle(FetchCompleted(1, 200, {"data": []}), T0 + 0.1)
    assert "tier" not in session.record().as_dict()["variables"]  # type: ignore[operator]


def test_required_field_missing() -> None:
    session, _ = start(required=["tier"])
    assert session.handle(FetchCompleted(1, 200, {"data": [{"n": 1}]}), T0 + 0.1) == [HangUp("failed")]
    assert session.record().as_dict()["variables"] == {"n": "1", "last_error": "missing_field"}
    assert session.record().as_dict()["path"] == ["lookup:missing_field", "failed:hangup"]


@pytest.mark.parametrize("reason", ["timeout", "connect_error", "http_503", "invalid_json", "circuit_open"])
def test_each_failure_reason_goes_to_on_error(reason: str) -> None:
    session, _ = start()
    assert session.handle(FetchFailed(1, reason, elapsed_ms=5), T0 + 0.1) == [HangUp("failed")]
    assert session.record().as_dict()["variables"] == {"last_error": reason}
    assert session.record().as_dict()["fetches"][0]["reason"] == reason  # type: ignore[index]


def test_non_2xx_completion_is_a_failure() -> None:
    session, _ = start()
    assert session.handle(FetchCompleted(1, 404, {"error": "x"}), T0 + 0.1) == [HangUp("failed")]
    assert session.record().as_dict()["path"][0] == "lookup:http_404"  # type: ignore[index]


def test_safety_deadline_then_late_answer_ignored() -> None:
    session, _ = start()
    assert session.handle_timer(T0 + 2.4) == []
    assert session.handle_timer(T0 + 2.5) == [HangUp("failed")]
    assert session.record().as_dict()["variables"] == {"last_error": "timeout"}
    assert session.handle(FetchCompleted(1, 200, {"data": [{"tier": "gold"}]}), T0 + 3) == []
    assert "tier" not in session.record().as_dict()["variables"]  # type: ignore[operator]


def test_answer_for_another_request_is_ignored() -> None:
    session, _ = start()
    assert session.handle(FetchCompleted(99, 200, {}), T0 + 0.1) == []
    assert session.handle(FetchFailed(0, "timeout"), T0 + 0.1) == []
    assert session.current_step == "lookup"


def test_filler_starts_after_delay_and_stops_on_answer() -> None:
    session, _ = start(filler={"after": "700ms", "prompts": ["one_moment"]})
    assert session.deadline == pytest.approx(T0 + 0.7)
    assert session.handle_timer(T0 + 0.7) == [Play(1, ("one_moment",), interruptible=False, loop=True)]
    assert session.deadline == T0 + 2.5
    assert session.handle(FetchCompleted(1, 200, {"data": [{"tier": "gold"}]}), T0 + 1) == [
        StopPlayback(1), HangUp("worked")]


def test_filler_stops_on_failure_and_not_started_when_fast() -> None:
    session, _ = start(filler={"after": 1, "prompts": ["one_moment"]})
    session.handle_timer(T0 + 1)
    assert session.handle(FetchFailed(1, "http_500"), T0 + 1.2) == [StopPlayback(1), HangUp("failed")]
    session, _ = start(filler={"after": 1, "prompts": ["one_moment"]})
    assert session.handle(FetchCompleted(1, 200, {}), T0 + 0.2) == [HangUp("worked")]


def test_call_ended_mid_fetch() -> None:
    session, _ = start(filler={"after": 0.5, "prompts": ["one_moment"]})
    session.handle_timer(T0 + 0.5)
    assert session.handle(CallEnded("caller_hangup"), T0 + 1) == []
    assert session.finished and session.deadline is None
    assert session.handle(FetchCompleted(1, 200, {}), T0 + 1.1) == []
    record = session.record().as_dict()
    assert record["path"] == ["lookup:abandoned"]
    assert record["fetches"][0]["outcome"] == "abandoned"  # type: ignore[index]
    assert record["outcome"] == abandoned("caller_hangup") and record["end_reason"] == "caller_hangup"


def test_the_reused_interpreter_answers_as_jmespath_search_does() -> None:
    """fetch.search (compiled once, one interpreter for every search) against jmespath.search, body after body:
    fields, indexes, projections, filters, functions, literals, misses; nothing carries over between searches."""
    import jmespath

    from ivr.flow.fetch import search

    bodies = [{"data": [{"id": "C1", "loyalty": {"tier": "gold"}, "tags": ["a", "b"], "n": 3},
                        {"id": "C2", "loyalty": {"tier": "silver"}, "tags": [], "n": 1}]},
              {"data": []}, {"data": None}, [], "text", None, {"data": [{"id": 7}]}]
    expressions = ["data[0].id", "data[0].loyalty.tier", "data[*].id", "data[?loyalty.tier=='silver'].id | [0]",
                   "length(data)", "max_by(data, &n).id", "data[0].tags[-1]", "data[1].missing.deeper",
                   "join(',', data[*].id)", "`\"lit\"`", "data[0].{i: id, t: loyalty.tier}", "@"]
    for _ in range(2):
        for body in bodies:
            for expression in expressions:
                try:
                    expected: object = jmespath.search(expression, body)
                except jmespath.exceptions.JMESPathError as exc:
                    expected = type(exc)
                try:
                    got: object = search(expression, body)
                except jmespath.exceptions.JMESPathError as exc:
                    got = type(exc)
                assert got == expected, (expression, body)

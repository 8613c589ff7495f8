"""Target choice: every strategy, the per-queue cursor, variable targets and their allow-list, Refer-To headers."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from ivr.config.model import Queue
from ivr.flow.targets import QueueCursors, allowed, plan_targets, variable_target, with_uri_headers

A, B, C = "sip:a@pbx.test", "sip:b@pbx.test", "sip:c@pbx.test"


def queue(strategy: str = "ordered", weights: tuple[int, ...] = (1, 1, 1), **extra: Any) -> Queue:
    targets = [{"uri": u, "weight": w} for u, w in zip((A, B, C), weights, strict=False)]
    return Queue.model_validate({"targets": targets, "strategy": strategy, **extra})


def test_ordered_always_starts_at_the_first() -> None:
    assert {plan_targets("q", queue(), t) for t in range(5)} == {(A, B, C)}


def test_round_robin_rotates_and_keeps_the_rest_as_fallbacks() -> None:
    plans = [plan_targets("q", queue("round_robin"), t) for t in range(4)]
    assert plans == [(A, B, C), (B, C, A), (C, A, B), (A, B, C)]


def test_round_robin_spreads_evenly_over_a_shared_cursor() -> None:
    cursors = QueueCursors()
    first = Counter(plan_targets("q", queue("round_robin"), cursors.take("q"))[0] for _ in range(30))
    assert first == {A: 10, B: 10, C: 10}
    assert cursors.take("other") == 0  # one counter per queue


def test_weighted_is_smooth_and_proportional() -> None:
    q = queue("weighted", (5, 1, 1))
    firsts = [plan_targets("q", q, t)[0] for t in range(7)]
    assert Counter(firsts) == {A: 5, B: 1, C: 1}
    assert firsts[:3] != [A, A, A]  # smooth: the light targets are interleaved, not batched
    assert Counter(plan_targets("q", q, t)[0] for t in range(700)) == {A: 500, B: 100, C: 100}
    light = next(t for t in range(7) if firsts[t] != A)
    assert plan_targets("q", q, light)[1] == A  # fallbacks: the heaviest remaining first
    assert plan_targets("q", q, 0)[1:] == (B, C)  # equal weights keep the list order


def test_random_is_seeded_reproducible_and_covers_every_target() -> None:
    q = queue("random")
    assert plan_targets("q", q, 3, seed=42) == plan_targets("q", q, 3, seed=42)
    plans = [plan_targets("q", q, t, seed=7) for t in range(300)]
    assert all(sorted(p) == [A, B, C] for p in plans)
    counts = Counter(p[0] for p in plans)
    assert set(counts) == {A, B, C} and min(counts.values()) > 60
    assert [plan_targets("q", q, t, seed=8) for t in range(20)] != plans[:20]


def test_uri_shorthand_is_one_target() -> None:
    q = Queue.model_validate({"uri": A})
    assert plan_targets("q", q, 9) == (A,)
    with pytest.raises(ValueError, match="not both"):
        Queue.model_validate({"uri": A, "targets": [{"uri": B}]})
    with pytest.raises(ValueError, match="needs"):
        Queue.model_validate({})


@pytest.mark.parametrize(("uri", "ok"), [
    ("sip:grace.hopper@pbx.example.com", True),
    ("SIP:grace@PBX.example.com", True),
    ("sip:grace@pbx.example.com:5070", False),           # the port is part of the pattern
    ("sip:evil@attacker.test;x=@pbx.example.com", False),
    ("sip:a@b@pbx.example.com", False),
    ("sip:@pbx.example.com", False),                      # '*' is at least one character
    ("sip:grace@pbx.example.com.attacker.test", False),
    ("sip:grace@evilpbx.example.com", False),
    ("sips:grace@pbx.example.com", False),
])
def test_allow_patterns(uri: str, ok: bool) -> None:
    assert allowed(uri, ("sip:*@pbx.example.com",)) is ok


def test_allow_pattern_with_a_wildcard_host_label() -> None:
    assert allowed("sip:100@branch1.pbx.test", ("sip:*@*.pbx.test",))
    assert not allowed("sip:100@pbx.test", ("sip:*@*.pbx.test",))


MANAGERS = Queue.model_validate({"allow": ["sip:*@pbx.example.com"]})


@pytest.mark.parametrize(("variables", "uri", "reason"), [
    ({"am": "grace"}, "sip:grace@pbx.example.com", "ok"),
    ({"am": ""}, None, "empty"),
    ({}, None, "empty"),
    ({"am": "  "}, None, "empty"),
    ({"am": "x@evil.test;y="}, None, "invalid"),
    ({"am": "grace>\r\nVia: x"}, None, "invalid"),
    ({"am": "gr ace"}, None, "invalid"),
    ({"am": "grace?X-Evil=1"}, None, "invalid"),
])
def test_variable_target_user_part(variables: dict[str, str], uri: str | None, reason: str) -> None:
    chosen = variable_target("sip:{{am}}@pbx.example.com", variables, MANAGERS)
    assert (chosen.uri, chosen.reason) == (uri, reason)


@pytest.mark.parametrize(("value", "reason"), [
    ("sip:grace@pbx.example.com", "ok"),
    ("sip:grace@other.example.com", "disallowed"),
    ("tel:+15551234", "invalid"),
    ("sip:grace@pbx.example.com;maddr=attacker.test", "disallowed"),   # a parameter that re-routes the call
    ("sip:grace@pbx.example.com?Route=%3Csip:attacker.test%3E", "invalid"),
    ("<sip:grace@pbx.example.com>", "invalid"),
    ("", "empty"),
])
def test_variable_target_whole_uri(value: str, reason: str) -> None:
    assert variable_target("{{am_sip}}", {"am_sip": value}, MANAGERS).reason == reason


def test_headers_in_the_uri_are_escaped() -> None:
    uri = with_uri_headers("sip:a@pbx.test;transport=tcp", (("X-Customer-Id", "C-1001"),
                                                             ("X-Name", "Ada Lovelace & Co=1;x")))
    assert uri == "sip:a@pbx.test;transport=tcp?X-Customer-Id=C-1001&X-Name=Ada%20Lovelace%20%26%20Co%3D1%3Bx"
    assert with_uri_headers(A, ()) == A

"""Templates: plain, URL path, SIP URI parameter and header rendering."""

from __future__ import annotations

from ivr.flow.template import (
    render,
    render_body,
    render_header,
    render_path,
    render_uri_param,
    with_uri_params,
)

VARS = {"caller": "+1 555/1?x=1&y", "tier": "gold", "evil": "a\r\nVia: x\x00\x7f", "id": "C1"}


def test_plain_render_and_unset_variable() -> None:
    assert render("{{tier}}-{{ id }}-{{missing}}!", VARS) == "gold-C1-!"
    assert render("no vars {{", VARS) == "no vars {{"


def test_path_escapes_values_only() -> None:
    assert render_path("/customers/{{caller}}?t={{tier}}", VARS) == "/customers/%2B1%20555%2F1%3Fx%3D1%26y?t=gold"


def test_uri_param_escapes_everything_dangerous() -> None:
    assert render_uri_param("{{caller}}", VARS) == "+1%20555%2F1%3Fx%3D1%26y"
    assert render_uri_param("a;b>c<d", {}) == "a%3Bb%3Ec%3Cd"


def test_header_strips_cr_lf_and_controls() -> None:
    assert render_header("x-{{evil}}", VARS) == "x-aVia: x"
    assert "\r" not in render_header("{{evil}}", VARS) and "\n" not in render_header("{{evil}}", VARS)
    assert render_header("  {{tier}} ", VARS) == "gold"


def test_body_renders_string_leaves() -> None:
    body = {"who": "{{id}}", "n": 3, "ok": True, "list": ["{{tier}}", None], "nested": {"k": "{{caller}}"}}
    assert render_body(body, VARS) == {"who": "C1", "n": 3, "ok": True, "list": ["gold", None],
                                       "nested": {"k": "+1 555/1?x=1&y"}}


def test_uri_params_go_before_headers() -> None:
    assert with_uri_params("sip:q@pbx", {"a": "1", "b": "x%3B"}) == "sip:q@pbx;a=1;b=x%3B"
    assert with_uri_params("sip:q@pbx;transport=tcp?X-A=1", {"a": "1"}) == "sip:q@pbx;transport=tcp;a=1?X-A=1"
    assert with_uri_params("sip:q@pbx", {}) == "sip:q@pbx"

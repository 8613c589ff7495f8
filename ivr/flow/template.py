"""`{{name}}` templates: plain, URL-path, SIP-URI-parameter and header-safe rendering of call variables."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import quote

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*\}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _substitute(template: str, variables: Mapping[str, str], escape: Callable[[str], str]) -> str:
    """Replace each `{{name}}` by escape(value); an unset variable renders as the empty string."""
    return _VAR.sub(lambda m: escape(variables.get(m.group(1), "")), template)


def references(template: str) -> set[str]:
    """The variable names a template uses."""
    return {match.group(1) for match in _VAR.finditer(template)}


def render(template: str, variables: Mapping[str, str]) -> str:
    """Plain rendering (set steps, query values: the HTTP client escapes those)."""
    return _substitute(template, variables, lambda value: value)


def render_path(template: str, variables: Mapping[str, str]) -> str:
    """A URL path: each value is percent-escaped whole ('/', '?', '&', '+' included); the template is not."""
    return _substitute(template, variables, lambda value: quote(value, safe=""))


def render_uri_param(template: str, variables: Mapping[str, str]) -> str:
    """A SIP URI parameter value: the whole rendered value is escaped, so ';', '?', '>' etc. cannot leak."""
    return quote(render(template, variables), safe="+")


def render_header(template: str, variables: Mapping[str, str]) -> str:
    """A header value: CR, LF and every other control character removed, outer whitespace stripped."""
    return _CONTROL.sub("", render(template, variables)).strip()


def render_body(value: object, variables: Mapping[str, str]) -> object:
    """A JSON body: string leaves are rendered (plain); keys, numbers, booleans and null are kept."""
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, dict):
        return {key: render_body(item, variables) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render_body(item, variables) for item in value]
    return value


def with_uri_params(uri: str, params: Mapping[str, str]) -> str:
    """Append `;name=value` parameters to a SIP URI, before any `?headers` part (or a closing '>')."""
    suffix = "".join(f";{name}={value}" for name, value in params.items())
    for stop in ("?", ">"):
        index = uri.find(stop)
        if index >= 0:
            return uri[:index] + suffix + uri[index:]
    return uri + suffix

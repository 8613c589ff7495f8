"""respond.io / Studio habits: JSONPath maps (`$.customer.type`) and the JMESPath to write instead."""

from __future__ import annotations

import re

_BRACKET_NAME = re.compile(r"""\[\s*['"]([^'"]+)['"]\s*\]""")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def jsonpath_hint(expr: str) -> str | None:
    """The JMESPath for a JSONPath expression (starts with `$`), or None when `expr` is not JSONPath.

    `$.a.b` -> `a.b`, `$['a'].b` -> `a.b`, `$.items[0].id` -> `items[0].id`, `$.items[*].id` -> `items[*].id`,
    `$` -> `@`; a key that is not a plain name is quoted (`$['first name']` -> `"first name"`). Recursive
    descent (`$..x`) and filters (`?(@...)`) have no direct equivalent: the hint is then a JMESPath sketch.
    """
    text = expr.strip()
    if not text.startswith("$"):
        return None
    body = _BRACKET_NAME.sub(lambda m: "." + _quoted(m.group(1)), text[1:])
    if body.startswith(".."):
        return f"[*].{body[2:]} (JMESPath has no recursive descent; name the path)"
    body = body.lstrip(".")
    if "?(" in body:
        body = body.replace("?(@.", "?").replace(")", "")
    return body or "@"


def _quoted(key: str) -> str:
    return key if _PLAIN.match(key) else '"' + key.replace('"', '\\"') + '"'

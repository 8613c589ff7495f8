"""Load a config file: YAML with a line for every value, ${ENV} expansion, validation and cross-checks."""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ivr.config.check import check_config
from ivr.config.model import IvrConfig
from ivr.errors import ConfigError, Issue, Severity

__all__ = ["ConfigError", "Issue", "LoadedConfig", "Source", "YamlPath", "load_config", "render_path"]

YamlPath = tuple[str | int, ...]
_BARE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_ENV_REF = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SCALAR_TAGS = {"str", "int", "float", "bool", "null"}
_TAG_PREFIX = "tag:yaml.org,2002:"
_MAX_VALUES = 200_000  # a config has thousands of values at most; more means an alias bomb
_SECRET_KEYS = {"password", "authorization", "token", "secret", "api_key", "x-api-key"}


def render_path(path: YamlPath) -> str:
    """`('flows', 'main', 'steps', 3, 'next')` -> `flows.main.steps[3].next`; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _BARE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out or "(root)"


@dataclass(frozen=True)
class Source:
    """Where each value of a parsed file sits, and which values came from the environment."""

    file: str
    lines: Mapping[YamlPath, int]
    from_env: frozenset[YamlPath] = frozenset()

    def line(self, path: YamlPath) -> int:
        """The line of the deepest node of `path` that exists in the file."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return self.lines.get((), 1)

    def issue(self, path: YamlPath, message: str, severity: Severity = "error") -> Issue:
        return Issue(self.file, self.line(path), render_path(path), message, severity)


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config with where it came from and the warnings found while checking it."""

    config: IvrConfig
    path: Path
    root: Path
    prompts_dir: Path
    warnings: tuple[Issue, ...] = ()


@dataclass
class _Builder:
    """Turns a composed YAML node tree into plain values, recording lines, env values and problems."""

    file: str
    env: Mapping[str, str]
    lines: dict[YamlPath, int] = field(default_factory=dict)
    from_env: set[YamlPath] = field(default_factory=set)
    issues: list[Issue] = field(default_factory=list)
    active: set[int] = field(default_factory=set)
    count: int = 0

    def error(self, line: int, path: YamlPath, message: str) -> None:
        self.issues.append(Issue(self.file, line, render_path(path), message))

    def build(self, node: yaml.Node, path: YamlPath) -> Any:
        self.count += 1
        if id(node) in self.active or self.count > _MAX_VALUES:
            if not any(i.message.startswith("aliases") for i in self.issues):
                self.error(node.start_mark.line + 1, path, "aliases that refer to themselves or expand too far")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self._child(item, path + (i,), item.start_mark.line + 1) for i, item in enumerate(node.value)]
            return self._scalar(node, path)
        finally:
            self.active.discard(id(node))

    def _child(self, node: yaml.Node, path: YamlPath, line: int) -> Any:
        self.lines.setdefault(path, line)
        return self.build(node, path)

    def _mapping(self, node: yaml.MappingNode, path: YamlPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _TAG_PREFIX + "merge":
                self._merge(out, value_node, path)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(line, path, "a mapping key must be a plain value")
                continue
            key = str(key_node.value)
            if key in seen:
                self.error(line, path + (key,), f"duplicate key '{key}' (first defined at line {seen[key]})")
            seen[key] = line
            self.lines[path + (key,)] = line
            out[key] = self.build(value_node, path + (key,))
        return out

    def _merge(self, out: dict[str, Any], node: yaml.Node, path: YamlPath) -> None:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            merged = self.build(source, path)
            if isinstance(merged, dict):
                for key, value in merged.items():
                    out.setdefault(key, value)
            else:
                self.error(source.start_mark.line + 1, path, "'<<' merges only mappings")

    def _scalar(self, node: yaml.Node, path: YamlPath) -> Any:
        line = node.start_mark.line + 1
        text = str(node.value)
        tag = node.tag.removeprefix(_TAG_PREFIX)
        if "${" in text and tag == "str":
            return self._expand(text, line, path)
        if tag == "timestamp":
            return text  # dates stay the text the operator wrote; the model has no date types
        if tag not in _SCALAR_TAGS:
            self.error(line, path, f"unsupported YAML tag {node.tag!r}")
            return None
        return yaml.constructor.SafeConstructor().construct_object(node)

    def _expand(self, text: str, line: int, path: YamlPath) -> str:
        def replace(match: re.Match[str]) -> str:
            escaped, name, default = match.groups()
            if escaped:
                return match.group(0)[1:]
            self.from_env.add(path)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.error(line, path, f"environment variable '{name}' is not set (write ${{{name}:-default}} "
                                   "to give a default)")
            return ""

        expanded = _ENV_REF.sub(replace, text)
        if "${" in _ENV_REF.sub("", text):
            self.error(line, path, "malformed ${...} reference: write ${NAME} or ${NAME:-default}")
        return expanded


def _parse(text: str, file: str, env: Mapping[str, str]) -> tuple[Any, Source, list[Issue]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        message = str(exc.problem or "invalid YAML")
        if exc.context and exc.context_mark:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise ConfigError([Issue(file, line, "(yaml)", message)]) from None
    if root is None:
        raise ConfigError([Issue(file, 1, "(yaml)", "the file is empty")])
    builder = _Builder(file, env)
    builder.lines[()] = root.start_mark.line + 1
    data = builder.build(root, ())
    return data, Source(file, builder.lines, frozenset(builder.from_env)), builder.issues


def load_config(path: str | Path, env: Mapping[str, str] | None = None, *, check_files: bool = True) -> LoadedConfig:
    """Parse, validate and cross-check a config file; raise ConfigError with every problem at once."""
    file, config_path = str(path), Path(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([Issue(file, 1, "(file)", f"cannot read the file: {reason}")]) from None
    data, source, issues = _parse(text, file, os.environ if env is None else env)
    try:
        config = IvrConfig.model_validate(data)
    except ValidationError as exc:
        known = {i.path for i in issues}
        issues += [i for i in validation_issues(exc, data, source) if i.path not in known]
        raise ConfigError(_redact(issues, data)) from None
    root = config_path.parent.resolve()
    prompts_dir = (root / config.prompts_dir).resolve()
    issues += check_config(config, source, root=root, prompts_dir=prompts_dir, check_files=check_files)
    issues = _redact(issues, data)
    if any(i.severity == "error" for i in issues):
        raise ConfigError(issues)
    return LoadedConfig(config, config_path, root, prompts_dir, tuple(sorted(issues, key=lambda i: i.line)))


# --- pydantic errors -> issues ---------------------------------------------------------------------


def validation_issues(exc: ValidationError, data: Any, source: Source) -> list[Issue]:
    """One operator-friendly Issue per pydantic error, at the YAML path and line of the bad value."""
    errors = exc.errors(include_url=False, include_input=True)
    issues: list[Issue] = []
    for error in errors:
        mapped = _yaml_path(error["loc"], data)
        if mapped is None or _is_echo(error, mapped, errors, data):
            continue
        path, message = _message(error, mapped, data)
        issues.append(source.issue(path, message))
    return list(dict.fromkeys(issues))


def _yaml_path(loc: tuple[str | int, ...], data: Any) -> YamlPath | None:
    """Strip union tags from a pydantic loc; None when the error belongs to a union branch not taken."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if i >= 2 and loc[i - 2] == "steps" and isinstance(loc[i - 1], int) and isinstance(node, dict):
            continue  # the Step union's discriminator tag: ('steps', 0, 'play', 'prompts')
        if isinstance(part, str) and "[" in part and not (isinstance(node, dict) and part in node):
            # a smart-union branch label (tuple[...] or function-after[..., Condition]): keep the branch
            # that matches the shape of the data (a list for tuple[...], anything else for the model)
            if part.startswith("tuple[") != isinstance(node, list):
                return None
            continue
        if part == "[key]":
            continue
        path.append(part)
        node = _at(node, (part,))
    return tuple(path)


def _is_echo(error: ErrorDetails, path: YamlPath, errors: list[ErrorDetails], data: Any) -> bool:
    """pydantic adds 'at least 1 item after validation, not 0' when every item failed: drop it."""
    if error["type"] != "too_short" or _at(data, path) in (None, [], {}):
        return False
    return any(len(e["loc"]) > len(error["loc"]) and e["loc"][: len(error["loc"])] == error["loc"] for e in errors)


def _at(data: Any, path: YamlPath) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _message(error: ErrorDetails, path: YamlPath, data: Any) -> tuple[YamlPath, str]:
    kind, msg, ctx = error["type"], error["msg"], error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        return path, f"missing required field '{path[-1]}'"
    if kind == "extra_forbidden":
        return path, _unknown_field(error["loc"], str(path[-1]))
    if kind == "union_tag_invalid":
        kinds = re.findall(r"'([^']+)'", str(ctx.get("expected_tags", "")))
        return path + ("type",), f"unknown step type '{ctx.get('tag')}'{_suggest(str(ctx.get('tag')), kinds)}; " \
            f"valid types: {', '.join(kinds)}"
    if kind == "union_tag_not_found":
        return path + ("type",), "missing 'type' (play, menu, gather, fetch, branch, hours, set, transfer, " \
            "hangup or goto)"
    if kind == "value_error":
        text = msg.removeprefix("Value error, ").splitlines()[0].rstrip(":").removesuffix(", for expression")
        return _pinpoint(path, text, data)
    if kind == "string_pattern_mismatch":
        return path, _pattern_message(str(ctx.get("pattern", "")), value)
    if kind == "string_type" and isinstance(value, bool | int | float):
        return path, f"expected a string, got {value!r}: put the value in quotes (YAML reads yes/no/on/off " \
            "as booleans and digits as numbers)"
    if kind in {"model_type", "dict_type"}:
        return path, f"expected a mapping (key: value), got {_kind_of(value)}"
    if kind in {"tuple_type", "list_type"}:
        return path, f"expected a list, got {_kind_of(value)}"
    if kind == "literal_error" and not _secret(path):
        return path, f"{msg} (got {value!r})"
    return path, msg


def _kind_of(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(type(value), "a value")


def _pinpoint(path: YamlPath, message: str, data: Any) -> tuple[YamlPath, str]:
    """Move a whole-value validator error onto the key or item it names (`tier: ...`, `'10.0.0.300'`)."""
    for _ in range(2):
        node = _at(data, path)
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node or [])) \
            if isinstance(node, list) else []
        first = message.split(":")[0].split(" ")[0]
        hits = [k for k, v in items if (isinstance(k, str) and (repr(k) in message or k == first))
                or (isinstance(v, str) and repr(v) in message)]
        if len(hits) != 1:
            break
        path = path + (hits[0],)
        message = message.removeprefix(f"{hits[0]}: ")
    return path, message


_PATTERNS = {
    "^[A-Za-z_][A-Za-z0-9_\\-]*$": "not a valid name {!r}: use letters, digits, '_' and '-', starting with a "
                                   "letter or '_'",
    "^[0-9*#A-D]$": "not a DTMF digit: {!r} (one of 0-9, *, #, A-D)",
    "^[A-Za-z0-9_\\-]+$": "not a prompt name: {!r} (the name of <prompts_dir>/<name>.wav, without '.wav')",
    "^https?://[^\\s]+$": "not an http(s) URL: {!r}",
    "^[A-Z]{2}$": "not a two-letter country code: {!r}",
}


def _pattern_message(pattern: str, value: object) -> str:
    if pattern.startswith("^([01]"):
        return f"not an opening-hours span: {value!r} (write 'HH:MM-HH:MM', e.g. '08:00-18:00')"
    return _PATTERNS.get(pattern, "{!r} does not match the pattern " + pattern.replace("{", "{{").replace(
        "}", "}}")).format(value)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_field(loc: tuple[str | int, ...], name: str) -> str:
    fields = _fields_at(loc[:-1])
    return f"unknown field '{name}'{_suggest(name, fields)}"


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    """The field names (aliases) of the model a pydantic loc points into, following union tags."""
    tp: Any = IvrConfig
    for part in loc:
        tp = _unwrap(tp, part)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = {(f.alias or n): f for n, f in tp.model_fields.items()}
            tp = info[part].annotation if part in info else tp
        elif typing.get_origin(tp) in (dict, tuple):
            args = typing.get_args(tp)
            tp = args[0] if part == "[key]" else args[-1] if typing.get_origin(tp) is dict else args[0]
    tp = _unwrap(tp, None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


def _unwrap(tp: Any, tag: str | int | None) -> Any:
    """Strip Annotated and Optional; pick the union member a discriminator tag names."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        members = [m for m in typing.get_args(tp) if m is not type(None)] if _is_union(tp) else []
        if not members:
            return tp
        tagged = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)
                  and "type" in m.model_fields and typing.get_args(m.model_fields["type"].annotation) == (tag,)]
        tp = tagged[0] if tagged else members[0]


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _secret(path: YamlPath) -> bool:
    return any(isinstance(p, str) and p.lower() in _SECRET_KEYS for p in path)


def _redact(issues: list[Issue], data: Any) -> list[Issue]:
    """Never print a secret: scrub the values of password/authorization-like keys from every message."""
    secrets = [s for s in _secret_values(data, ()) if len(s) >= 3]
    out = []
    for issue in issues:
        for secret in secrets:
            issue = replace(issue, message=issue.message.replace(secret, "***"))
        out.append(issue)
    return out


def _secret_values(data: Any, path: YamlPath) -> list[str]:
    if isinstance(data, dict):
        return [s for k, v in data.items() for s in _secret_values(v, path + (k,))]
    if isinstance(data, list):
        return [s for i, v in enumerate(data) for s in _secret_values(v, path + (i,))]
    return [str(data)] if _secret(path) and data is not None else []

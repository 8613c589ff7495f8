"""Say texts rendered for speech: `{{name}}` and `{{name|reader}}` (ivr/flow/readers.py), the text of a language."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ivr.flow.readers import READERS

FIELD = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*(?:\|\s*([a-z_]+)\s*)?\}\}")


def render_speech(text: str, variables: Mapping[str, str], lang: str) -> str:
    """`{{name}}` and `{{name|reader}}` replaced by the value (read aloud); unset variables say nothing."""
    def one(match: re.Match[str]) -> str:
        value = variables.get(match.group(1), "")
        reader = READERS.get(match.group(2) or "")
        return reader(value, lang) if reader is not None and value else value
    return re.sub(r"\s+", " ", FIELD.sub(one, text)).strip()


def text_for(text: str | Mapping[str, str], lang: str, default_lang: str) -> str:
    """The text in `lang` (a map falls back to the default language, then to its first text)."""
    if isinstance(text, str):
        return text
    return text.get(lang) or text.get(default_lang) or next(iter(text.values()))

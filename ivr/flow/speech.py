"""The `say` step: text with variables and readers, spoken in the call's language. Pure: the step emits a
`Speak` command carrying the rendered text; the controller synthesises it (ivr/tts) and the worker plays it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from ivr.config.model import IvrConfig
from ivr.config.speech import SayStep
from ivr.flow.context import Activity, CallContext, Next, Reply
from ivr.flow.readers import READERS

_FIELD = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*(?:\|\s*([a-z_]+)\s*)?\}\}")


def render_speech(text: str, variables: Mapping[str, str], lang: str) -> str:
    """`{{name}}` and `{{name|reader}}` replaced by the value (read aloud); unset variables say nothing."""
    def one(match: re.Match[str]) -> str:
        value = variables.get(match.group(1), "")
        reader = READERS.get(match.group(2) or "")
        return reader(value, lang) if reader is not None and value else value
    return re.sub(r"\s+", " ", _FIELD.sub(one, text)).strip()


def text_for(step: SayStep, lang: str, default_lang: str) -> str:
    """The step's text in `lang` (a map falls back to the default language, then to its first text)."""
    if isinstance(step.text, str):
        return step.text
    return step.text.get(lang) or step.text.get(default_lang) or next(iter(step.text.values()))


def unknown_readers(text: str) -> list[str]:
    """Readers a text names that do not exist (for `ivr check`)."""
    return [m.group(2) for m in _FIELD.finditer(text) if m.group(2) and m.group(2) not in READERS]


def variables_of(text: str) -> list[str]:
    """The variables a say text uses, in order, once each."""
    return list(dict.fromkeys(m.group(1) for m in _FIELD.finditer(text)))


def static_texts(config: IvrConfig) -> Iterator[tuple[str, str]]:
    """(text, lang) of every say text without variables: rendered at start-up so no caller waits for them."""
    tts = config.tts
    for flow in config.flows.values():
        for step in flow.steps:
            if not isinstance(step, SayStep):
                continue
            texts = {tts.default_lang: step.text} if isinstance(step.text, str) else step.text
            for lang, text in texts.items():
                if "{{" not in text and lang in tts.voices:
                    yield render_speech(text, {}, lang), lang


class SayActivity(Activity):
    """Speaks the rendered text; like a play step, a digit barges in when it is interruptible."""

    def __init__(self, step: SayStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx)
        self.step = step

    def start(self, now: float) -> Reply:
        if self.step.interruptible and self.ctx.type_ahead:
            return Reply(then=Next("skipped", self.step.next))
        lang = self.ctx.lang
        text = render_speech(text_for(self.step, lang, self.ctx.config.tts.default_lang), self.ctx.variables, lang)
        if not text:
            return Reply(then=Next("empty", self.step.next))
        self.ctx.said.append(text)
        return Reply([self.ctx.speak((("say", text),), interruptible=self.step.interruptible)])

    def on_digit(self, digit: str, now: float) -> Reply:
        self.ctx.buffer_digit(digit)
        if not self.step.interruptible:
            return Reply()
        return Reply(self.ctx.stop_playback(), Next("barged_in", self.step.next))

    def on_playback_finished(self, now: float) -> Reply:
        return Reply(then=Next("said", self.step.next))

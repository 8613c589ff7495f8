"""The `say` step: text with variables and readers, spoken in the call's language. Pure: the step emits a
`Speak` command carrying the rendered text; the controller synthesises it (ivr/tts) and the worker plays it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ivr.config.model import IvrConfig
from ivr.config.speech import SayPrompt, SayStep
from ivr.config.steps import Step
from ivr.flow.context import CallContext, Next, PromptActivity, Reply
from ivr.flow.readers import READERS
from ivr.flow.spoken import FIELD, render_speech, text_for


def unknown_readers(text: str) -> list[str]:
    """Readers a text names that do not exist (for `ivr check`)."""
    return [m.group(2) for m in FIELD.finditer(text) if m.group(2) and m.group(2) not in READERS]


def variables_of(text: str) -> list[str]:
    """The variables a say text uses, in order, once each."""
    return list(dict.fromkeys(m.group(1) for m in FIELD.finditer(text)))


def static_texts(config: IvrConfig) -> Iterator[tuple[str, str]]:
    """(text, lang) of every say text without variables: rendered at start-up so no caller waits for them."""
    tts = config.tts
    for flow in config.flows.values():
        for step in flow.steps:
            for text, lang in _says_of(step):
                yield from _static(text, lang or tts.default_lang, tts.voices)


def _says_of(step: Step) -> Iterator[tuple[str | dict[str, str], str | None]]:
    """Say texts of a step, each with the language it is always spoken in (None: the call's)."""
    if isinstance(step, SayStep):
        yield step.text, None
    for key in ("prompts", "invalid_prompts", "no_input_prompts"):
        yield from ((p.say, p.lang) for p in getattr(step, key, ()) if isinstance(p, SayPrompt))


def _static(text: str | dict[str, str], lang: str, voices: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    texts = {lang: text} if isinstance(text, str) else text
    for lang, one in texts.items():
        if "{{" not in one and lang in voices:
            yield render_speech(one, {}, lang), lang


class SayActivity(PromptActivity):
    """Speaks the rendered text; like a play step, a digit barges in when it is interruptible."""

    def __init__(self, step: SayStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx, interruptible=step.interruptible, next_step=step.next, finished="said")
        self.step = step

    def start(self, now: float) -> Reply:
        if self.step.interruptible and self.ctx.type_ahead:
            return Reply(then=Next("skipped", self.step.next))
        lang = self.ctx.lang
        text = render_speech(text_for(self.step.text, lang, self.ctx.config.tts.default_lang), self.ctx.variables, lang)
        if not text:
            return Reply(then=Next("empty", self.step.next))
        self.ctx.said.append(text)
        return Reply([self.ctx.speak((("say", text),), interruptible=self.step.interruptible)])

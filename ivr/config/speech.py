"""Speech config: the `say` step and the `tts` section (engines, voices per language, cache, budget)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from ivr.config.base import Strict
from ivr.config.types import Duration, Name, PromptName

Lang = str
"""A language code (ISO 639-1, e.g. en, es)."""

_VOICE_ENGINES = ("flite", "espeak-ng", "http")


class SayPrompt(Strict):
    say: str | dict[Lang, str] = Field(description="Text to speech among a step's prompts: "
                                       "`prompts: [{say: 'For English, press 1.'}, main_menu]`; like a say step's "
                                       "text (variables, readers, a map language -> text).")
    lang: Lang | None = Field(None, pattern=r"^[a-z]{2}$", description="Speak this text in this language's "
                              "voice whatever the call's language (a language menu: 'Para español, marque 2').")


Prompt = Annotated[PromptName | SayPrompt, Field(union_mode="left_to_right")]
"""A prompt file's name, or a text spoken by the TTS engine."""


class SayStep(Strict):
    id: Name = Field(description="Step id, unique in its flow; other steps refer to it.")
    type: Literal["say"] = Field(description="Step kind: say (text to speech).")
    text: str | dict[Lang, str] = Field(description="Text spoken with the call's voice; {{variable}} and readers "
                                        "{{variable|number}}, |digits, |money, |date, |time, |weekday. A map "
                                        "language -> text speaks the text of the call's `lang`.")
    interruptible: bool = Field(True, description="A digit stops the speech (kept for the next input).")
    next: Name | None = Field(None, description="Next step; default: the following step in the list.")

    @field_validator("text")
    @classmethod
    def _not_empty(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        texts = [value] if isinstance(value, str) else list(value.values())
        if not texts or any(not t.strip() for t in texts):
            raise ValueError("say needs a non-empty text")
        return value


class HttpTts(Strict):
    url: str = Field(description="POST {text, voice, format: wav}; the answer is a WAV (any rate; resampled).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers (an API key: ${ENV}).")


class TtsConfig(Strict):
    default_lang: Lang = Field("en", pattern=r"^[a-z]{2}$", description="Language of a call whose `lang` "
                               "variable is unset or has no voice.")
    voices: dict[Lang, str] = Field(default_factory=lambda: {"en": "flite:slt", "es": "espeak-ng:es"},
                                    description="Language -> ENGINE:VOICE (flite:slt, espeak-ng:es, "
                                    "http:NAME). Also the languages of the prompt sets (prompts/<lang>/).")
    http: HttpTts | None = Field(None, description="The HTTP TTS service behind http:VOICE voices.")
    cache_mb: float = Field(64, gt=0, description="Disk cache of rendered speech (run dir), LRU by size.")
    budget: Duration = Field(3.0, gt=0, le=30, description="Longest a caller waits for a dynamic text; "
                             "past it the fallback plays instead.")
    concurrency: int = Field(2, ge=1, le=16, description="Syntheses running at once.")
    fallback_prompts: tuple[PromptName, ...] = Field((), description="Played when speech cannot be rendered "
                                                     "in time (none: the text is skipped).")

    @field_validator("voices")
    @classmethod
    def _voices(cls, value: dict[str, str]) -> dict[str, str]:
        for lang, voice in value.items():
            engine, _, name = voice.partition(":")
            if engine not in _VOICE_ENGINES or not name:
                raise ValueError(f"{lang}: voice {voice!r} is not ENGINE:VOICE with ENGINE one of "
                                 f"{', '.join(_VOICE_ENGINES)}")
        return value

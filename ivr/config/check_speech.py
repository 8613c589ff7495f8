"""Cross-checks of speech and languages: say texts (variables, readers, languages) and per-language prompt sets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ivr.config.model import IvrConfig
from ivr.config.speech import SayPrompt, SayStep
from ivr.flow.speech import unknown_readers, variables_of

if TYPE_CHECKING:
    from ivr.config.load import YamlPath

Severity = Literal["error", "warning"]


def _says(config: IvrConfig) -> Iterator[tuple[YamlPath, str | dict[str, str]]]:
    """Every say text with its path: say steps' `text`, `{say: ...}` prompts' `say`."""
    for name, flow in config.flows.items():
        for i, step in enumerate(flow.steps):
            path: YamlPath = ("flows", name, "steps", i)
            if isinstance(step, SayStep):
                yield path + ("text",), step.text
            for key in ("prompts", "invalid_prompts", "no_input_prompts"):
                for j, prompt in enumerate(getattr(step, key, ())):
                    if isinstance(prompt, SayPrompt):
                        yield path + (key, j, "say"), prompt.say


def speech_issues(config: IvrConfig, known: set[str]) -> Iterator[tuple[YamlPath, str, Severity]]:
    """Say texts naming an unknown reader, a variable nothing sets, or a language without a voice."""
    tts = config.tts
    if tts.default_lang not in tts.voices:
        yield ("tts", "default_lang"), f"no voice for the default language '{tts.default_lang}'", "error"
    for path, said in _says(config):
        texts = {"": said} if isinstance(said, str) else said
        for lang, text in texts.items():
            where = path + ((lang,) if lang else ())
            for reader in unknown_readers(text):
                yield where, (f"unknown reader '{reader}' (digits, number, money, date, time, weekday)"), "error"
            for var in variables_of(text):
                if var not in known and var != "lang":
                    yield where, f"say variable '{var}' is never set", "warning"
            if lang and lang not in tts.voices:
                yield where, f"no voice for language '{lang}' in tts.voices", "warning"


def voice_issues(config: IvrConfig) -> Iterator[tuple[YamlPath, str, Severity]]:
    """Offline voices the installed engines do not have."""
    from ivr.tts.engine import offline_voice_problem

    for lang, voice in config.tts.voices.items():
        problem = offline_voice_problem(voice)
        if problem is not None:
            yield ("tts", "voices", lang), problem, "error"


def language_prompt_issues(config: IvrConfig, prompts_dir: Path, written: str,
                           refs: Iterable[tuple[YamlPath, str]]) -> Iterator[tuple[YamlPath, str, Severity]]:
    """A prompt the flows use that a language's set (`<prompts>/<lang>/`, when that directory exists) lacks:
    callers in that language would hear the default set's recording."""
    sets = [lang for lang in sorted(config.tts.voices) if (prompts_dir / lang).is_dir()]
    for path, prompt in refs:
        for lang in sets:
            if not (prompts_dir / lang / f"{prompt}.wav").is_file():
                yield path, (f"prompt '{prompt}' missing in language '{lang}' ({written}/{lang}/{prompt}.wav): "
                             f"{lang} callers hear the default {written}/{prompt}.wav"), "warning"

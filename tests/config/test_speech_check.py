"""`ivr check` on speech: a prompt missing in one language's set (file:line), say texts, voices."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from ivr.config.load import load_config

REPO = Path(__file__).resolve().parents[2]

CONFIG = """\
prompts_dir: prompts
trunks:
  - name: demo
    sources: [127.0.0.1]
numbers:
  "100": main
queues:
  default: {uri: "sip:default@127.0.0.1:5070"}
tts:
  voices: {en: "flite:slt", es: "espeak-ng:es"}
flows:
  main:
    steps:
      - id: hello
        type: play
        prompts: [welcome, {say: "Hi {{name|number}}, {{who}}"}]
      - id: bye
        type: say
        text: {en: "Bye {{caller|digits}}", es: "Adiós", fr: "Au revoir {{x|shout}}"}
      - {id: to_default, type: transfer, queue: default}
"""


def _check(tmp_path: Path, text: str) -> list[str]:
    prompts = tmp_path / "prompts"
    (prompts / "es").mkdir(parents=True)
    shutil.copy(REPO / "prompts" / "welcome.wav", prompts / "welcome.wav")
    (tmp_path / "ivr.yaml").write_text(textwrap.dedent(text))
    try:
        loaded = load_config(tmp_path / "ivr.yaml", {}, check_files=True)
    except Exception as exc:  # ConfigError: the errors and warnings
        return [f"{i.line}: {i.path}: {i.message}" for i in exc.issues]  # type: ignore[attr-defined]
    return [f"{i.line}: {i.path}: {i.message}" for i in loaded.warnings]


def test_a_prompt_missing_in_one_language_and_say_problems(tmp_path: Path) -> None:
    found = _check(tmp_path, CONFIG)
    assert "16: flows.main.steps[0].prompts[0]: prompt 'welcome' missing in language 'es' (prompts/es/welcome.wav): " \
        "es callers hear the default prompts/welcome.wav" in found, found
    assert any(f.startswith("19: flows.main.steps[1].text.fr: unknown reader 'shout'") for f in found), found
    assert any(f.startswith("19: flows.main.steps[1].text.fr: no voice for language 'fr'") for f in found), found
    assert any("say variable 'x' is never set" in f for f in found), found
    who = "16: flows.main.steps[0].prompts[1].say: say variable 'who' is never set"
    assert any(f.startswith(who) for f in found), found


def test_an_unknown_voice_is_an_error(tmp_path: Path) -> None:
    found = _check(tmp_path, CONFIG.replace('es: "espeak-ng:es"', 'es: "espeak-ng:klingon"'))
    assert any("tts.voices.es: espeak-ng has no voice 'klingon'" in f for f in found), found

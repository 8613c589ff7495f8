"""The checks of `ivr check` that read files beside the config: prompt WAVs (every language), the demo CRM's
customer data, TLS certificates and keys. `check.py` runs them unless told not to (a reload checks only the model)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.config.check_speech import language_prompt_issues, voice_issues
from ivr.config.record_steps import RecordStep
from ivr.config.steps import FetchStep
from ivr.config.tls_check import file_problems

if TYPE_CHECKING:
    from ivr.config.check import _Ctx as Ctx
    from ivr.config.load import YamlPath

Check = Callable[["Ctx"], None]


def tls_files(root: Path) -> Check:
    def check(ctx: Ctx) -> None:
        for path, message, severity in file_problems(ctx.config, root):
            (ctx.error if severity == "error" else ctx.warn)(path, message)

    return check


def _prompt_refs(ctx: Ctx) -> Iterator[tuple[YamlPath, str]]:
    for _, _, step, path in ctx.steps():
        for key in ("prompts", "invalid_prompts", "no_input_prompts", "review_prompts"):
            yield from ((path + (key, i), p) for i, p in enumerate(getattr(step, key, ())) if isinstance(p, str))
        if isinstance(step, RecordStep) and step.beep is not None:
            yield path + ("beep",), step.beep
        if isinstance(step, FetchStep) and step.filler is not None:
            yield from ((path + ("filler", "prompts", i), p) for i, p in enumerate(step.filler.prompts))


def prompt_files(prompts_dir: Path) -> Check:
    def check(ctx: Ctx) -> None:
        written = ctx.config.prompts_dir.rstrip("/")
        if not prompts_dir.is_dir():
            ctx.error(("prompts_dir",), f"prompts directory not found: {written}")
            return
        for path, prompt in _prompt_refs(ctx):
            if not (prompts_dir / f"{prompt}.wav").is_file():
                ctx.error(path, f"prompt file not found: {written}/{prompt}.wav")
        refs = [*_prompt_refs(ctx), *((("tts", "fallback_prompts", i), p)
                                      for i, p in enumerate(ctx.config.tts.fallback_prompts))]
        for path, message, _ in language_prompt_issues(ctx.config, prompts_dir, written, refs):
            ctx.warn(path, message)
        for path, message, _ in voice_issues(ctx.config):
            ctx.error(path, message)

    return check


def demo_crm_file(root: Path) -> Check:
    def check(ctx: Ctx) -> None:
        demo = ctx.config.demo_crm
        if not demo.enabled:
            return
        if not (root / demo.customers).is_file():
            ctx.error(("demo_crm", "customers"), f"demo CRM customers file not found: {demo.customers}")
            return
        from ivr.democrm import CustomerDataError, load_customers  # aiohttp: only when the demo CRM is on

        try:
            load_customers(root / demo.customers)
        except CustomerDataError as exc:
            problems = str(exc).removeprefix(f"{root / demo.customers}: ")
            ctx.error(("demo_crm", "customers"), f"demo CRM customers file {demo.customers} unusable: {problems}")

    return check

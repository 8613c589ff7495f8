"""The `record` step (voicemail): part of the `Step` union in steps.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ivr.config.base import Strict
from ivr.config.types import Digit, Duration, Name, PromptName


class RecordStep(Strict):
    """Beep, record the caller until the finish key, silence or the maximum length; optionally review."""

    id: Name = Field(description="Step id, unique in its flow; other steps refer to it.")
    type: Literal["record"] = Field(description="Step kind: record.")
    prompts: tuple[PromptName, ...] = Field((), description="Played first (\"leave a message after the "
                                            "tone\"); a finish key pressed during them is ignored.")
    beep: PromptName | None = Field("beep", description="Tone played right before recording; none: no tone.")
    max_length: Duration = Field(120.0, gt=0, le=3600, description="Recording stops at this length.")
    silence: Duration = Field(5.0, gt=0, description="Recording stops after this much silence (trailing "
                              "silence is trimmed from the reported length, not from the file).")
    min_length: Duration = Field(1.0, ge=0, description="Shorter recordings (or all silence) count as empty.")
    finish_on: Digit = Field("#", description="Key that ends the recording (not recorded).")
    review: bool = Field(True, description="After recording: 1 listen, 2 record again, 3 keep.")
    review_prompts: tuple[PromptName, ...] = Field(("voicemail_review",), description="The review menu.")
    review_timeout: Duration = Field(6.0, gt=0, description="Wait for a review choice; no choice keeps it.")
    max_takes: int = Field(3, ge=1, le=10, description="Recordings allowed (the last one is kept).")
    variable: Name = Field("recording", description="Variable set to the kept recording's file name.")
    next: Name | None = Field(None, description="Step after a kept recording; default: the following step.")
    on_empty: Name | None = Field(None, description="Step when every take was empty; default: `next`.")

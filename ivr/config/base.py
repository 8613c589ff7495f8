"""The base of every config model: unknown fields are errors, values are immutable (house rule 5)."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

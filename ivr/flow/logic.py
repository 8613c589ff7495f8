"""Immediate steps for richer logic: counters, and calls into sub-flows that return.

A `call` step pushes a frame (the calling flow, the call step's index and its `next`) on the context's
stack and enters the called flow; a `return` step, or running past the end of a called flow, pops it and
goes on at the caller's `next`. The session does the moves (`Next.call` / `Next.back`); this module only
decides. The session bounds the frames (`session.MAX_DEPTH`): endless recursion hangs up "call_depth".
"""

from __future__ import annotations

from typing import assert_never

from ivr.config.logic_steps import CallStep, CounterStep, ReturnStep
from ivr.flow.conditions import number
from ivr.flow.context import CallContext, Next, Reply

LogicStep = CounterStep | CallStep | ReturnStep


def enter_logic(step: LogicStep, ctx: CallContext) -> Reply:
    """Where an immediate logic step goes."""
    match step:
        case CounterStep():
            return Reply(then=_count(step, ctx))
        case CallStep():
            return Reply(then=Next("called", step.next, step.flow, call=True))
        case ReturnStep():
            return Reply(then=Next("returned", back=True))
        case _:
            assert_never(step)


def _count(step: CounterStep, ctx: CallContext) -> Next:
    current = number(ctx.variables.get(step.var))
    start = int(current) if current is not None and current.is_integer() else 0
    value = step.add if step.reset else start + step.add
    ctx.variables[step.var] = str(value)
    if step.limit is not None and value > step.limit:
        return Next("limit", step.on_limit)
    return Next(str(value), step.next)

"""The append stream's read-ahead budget: what was read but not yet taken by the writer
stays within its bytes, and one message larger than all of it still passes, alone."""

from __future__ import annotations

import asyncio

from agentstore.service.appends import _ByteBudget


async def test_a_take_past_the_budget_waits_for_a_release() -> None:
    budget = _ByteBudget(100)
    await budget.take(60)
    second = asyncio.create_task(budget.take(60))
    await asyncio.wait_for(budget.stalled.wait(), 5)
    assert not second.done()
    await budget.release(60)
    await asyncio.wait_for(second, 5)


async def test_takes_within_the_budget_do_not_wait() -> None:
    budget = _ByteBudget(100)
    for _ in range(4):
        await asyncio.wait_for(budget.take(25), 0.5)
    assert not budget.stalled.is_set()


async def test_one_message_larger_than_the_budget_passes_alone() -> None:
    budget = _ByteBudget(100)
    await asyncio.wait_for(budget.take(500), 0.5)
    blocked = asyncio.create_task(budget.take(1))
    await asyncio.wait_for(budget.stalled.wait(), 5)
    assert not blocked.done()
    await budget.release(500)
    await asyncio.wait_for(blocked, 5)

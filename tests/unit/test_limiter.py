"""WeightedLimiter: the bound on calls in flight (a fork of n takes n slots), first come first served."""

from __future__ import annotations

import asyncio
import random

import pytest

from pdr.engines.base import WeightedLimiter


def test_capacity_is_never_exceeded_and_every_caller_gets_through():
    async def main() -> tuple[int, int, int]:
        limiter = WeightedLimiter(10)
        peak = 0
        done = 0
        rng = random.Random(0)

        async def call(weight: int, hold: float) -> None:
            nonlocal peak, done
            got = await limiter.acquire(weight)
            peak = max(peak, limiter.in_use)
            await asyncio.sleep(hold)
            await limiter.release(got)
            done += 1

        await asyncio.gather(*(call(rng.choice([1, 1, 2, 8, 16]), rng.random() / 1000) for _ in range(300)))
        return peak, done, limiter.in_use

    peak, done, in_use = asyncio.run(main())
    assert peak <= 10 and done == 300 and in_use == 0


def test_waiters_are_served_in_arrival_order_so_a_wide_fork_is_not_starved():
    async def main() -> list[str]:
        limiter = WeightedLimiter(4)
        order: list[str] = []
        first = await limiter.acquire(3)  # 1 slot left: the fork of 4 must wait for it

        async def call(name: str, weight: int) -> None:
            got = await limiter.acquire(weight)
            order.append(name)
            await limiter.release(got)

        tasks = [asyncio.create_task(call("fork", 4))]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(call(f"single{i}", 1)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert order == []  # the singles queue behind the fork instead of slipping past it
        await limiter.release(first)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == ["fork", "single0", "single1", "single2"]


def test_a_cancelled_waiter_gives_its_place_back():
    async def main() -> int:
        limiter = WeightedLimiter(2)
        held = await limiter.acquire(2)
        waiter = asyncio.create_task(limiter.acquire(2))
        behind = asyncio.create_task(limiter.acquire(1))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await limiter.release(held)
        got = await asyncio.wait_for(behind, 1)
        await limiter.release(got)
        return limiter.in_use

    assert asyncio.run(main()) == 0


def test_a_request_wider_than_the_limit_runs_alone():
    async def main() -> int:
        limiter = WeightedLimiter(4)
        got = await limiter.acquire(16)
        in_use = limiter.in_use
        await limiter.release(got)
        return in_use

    assert asyncio.run(main()) == 4

"""The one retry policy.

Two layers, each with one job: ``quick_retry`` (tenacity) lets a connector ride out a
network blip within a single call, a few seconds at most; ``backoff`` schedules the
outbox's longer retries (exponential, jittered, capped, and never sooner than the
server's Retry-After). Business code never sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from gateway.ports import TransientError

T = TypeVar("T")


def backoff(
    attempts: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempts + 1``.

    Exponential in the number of attempts made, with "equal jitter" (between half and
    all of the step) so a fleet of retries does not stampede, capped at ``cap``. A
    server's Retry-After hint wins when it asks for longer.
    """
    step = min(cap, base * (2 ** max(0, attempts - 1)))
    delay: float = step / 2 + (rng or random).uniform(0, step / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def quick_retry(attempts: int = 3, max_wait: float = 4.0) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator for one connector call: retry TransientError a few times, briefly."""
    decorator: Callable[[Callable[..., T]], Callable[..., T]] = retry(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=max_wait),
        reraise=True,
    )
    return decorator

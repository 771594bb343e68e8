"""Retries of transient failures: one policy, one counter, one loop.

Only ``TransientError`` (timeouts, throttling, 5xx, dropped connections) is retried, never a 4xx
or any other error. Delays grow exponentially with full jitter; a total time budget stops new
attempts once it has passed since the first failure.

The store stack owns retries: each backend's ``ResilientStore`` retries per the config's
``retries`` section (``RetryPolicy.from_config``), whose defaults are ``RetryPolicy``'s own (the
one default, ``DEFAULT_RETRIES``). Work that spans several stack calls for one object (a bulk
transfer's copy, which may re-run a streamed cross-backend copy the stack cannot replay) runs
``with sharing(retries):``; every retry made inside it, by any layer, is counted by that one
``Retries``, so the object sees at most ``policy.attempts`` attempts in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .errors import InvalidArgumentError, TransientError

if TYPE_CHECKING:
    from .config import RetriesConfig

__all__ = ["DEFAULT_RETRIES", "NO_RETRY", "Retries", "RetryPolicy", "policy_of", "retrying", "sharing"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of ``TransientError`` only: exponential backoff with full jitter.

    ``attempts`` counts the first try. No retry starts once ``total_timeout`` seconds have passed
    since the first failure, or since the deadline the caller passes (None: no time budget).
    These defaults are the library's only ones: the config's ``retries`` section
    (``RetriesConfig``) takes its defaults from them.
    """

    attempts: int = 4
    base_delay: float = 0.1
    max_delay: float = 5.0
    total_timeout: float | None = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidArgumentError(f"attempts must be at least 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise InvalidArgumentError("retry delays must not be negative")

    @classmethod
    def from_config(cls, config: RetriesConfig) -> RetryPolicy:
        """The policy of a config's ``retries`` section (``totalTimeout: 0`` means no time budget)."""
        return cls(
            attempts=config.max_attempts,
            base_delay=config.base_delay,
            max_delay=config.max_delay,
            total_timeout=config.total_timeout or None,
        )

    def delay(self, retry: int) -> float:
        """The sleep before retry number ``retry`` (1 for the first retry): full jitter."""
        return random.uniform(0.0, min(self.max_delay, self.base_delay * 2.0 ** (retry - 1)))

    def deadline(self) -> float | None:
        """The event-loop time after which no retry starts, for an operation starting now."""
        if self.total_timeout is None:
            return None
        return asyncio.get_running_loop().time() + self.total_timeout

    def start(self, deadline: float | None = None) -> Retries:
        """The retries of one operation: ``await retries.wait()`` before each one.

        Inside ``sharing(counter)``, a policy that retries at all (``attempts`` > 1) returns that
        counter instead of a new one, so the operation's retries count against the budget of the
        object being worked on. A policy of one attempt never retries, shared budget or not.
        """
        if self.attempts > 1:
            shared = _SHARED.get()
            if shared is not None:
                return shared
        return Retries(self, deadline)


class Retries:
    """The retries of one operation under a policy. ``wait()`` counts the next retry and sleeps its
    backoff; it returns False, without sleeping, once the attempts or the time budget (from the
    ``deadline`` given, else from the first failure) are spent, so the caller re-raises."""

    __slots__ = ("count", "deadline", "policy")

    def __init__(self, policy: RetryPolicy, deadline: float | None = None) -> None:
        self.policy = policy
        self.deadline = deadline
        self.count = 0

    async def wait(self) -> bool:
        self.count += 1
        policy = self.policy
        if self.count >= policy.attempts:
            return False
        if self.count == 1 and self.deadline is None:
            self.deadline = policy.deadline()
        delay = policy.delay(self.count)
        if self.deadline is not None and asyncio.get_running_loop().time() + delay > self.deadline:
            return False
        await asyncio.sleep(delay)
        return True


NO_RETRY = RetryPolicy(attempts=1)
#: The default policy, and the defaults of the config's ``retries`` section: four attempts,
#: backoff from 100 ms capped at 5 s, no retry starting 30 s after the first failure.
DEFAULT_RETRIES = RetryPolicy()

#: The counter of the object being worked on, when a caller shares one (see ``sharing``).
_SHARED: ContextVar[Retries | None] = ContextVar("flytestore_shared_retries", default=None)


@contextlib.contextmanager
def sharing(retries: Retries) -> Iterator[Retries]:
    """Count every retry made within the block (by this task, and by the tasks it starts) with
    ``retries``: the stack's retries of each call and the caller's own, so that all the attempts
    at one object stay within one budget. Blocks do not nest: the innermost counter applies."""
    token = _SHARED.set(retries)
    try:
        yield retries
    finally:
        _SHARED.reset(token)


def policy_of(store: object) -> RetryPolicy | None:
    """The retry policy of a store stack: the ``retry_policy`` of the store (a ``DataStore``, a
    ``ResilientStore``) or of the first layer below it (``inner``) that has one; None when there
    is none to find (a bare backend, which retries by itself or not at all)."""
    seen = 0
    while store is not None and seen < 64:
        policy = getattr(store, "retry_policy", None)
        if isinstance(policy, RetryPolicy):
            return policy
        store = getattr(store, "inner", None)
        seen += 1
    return None


async def retrying(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    deadline: float | None = None,
    *,
    after: TransientError | None = None,
) -> T:
    """``await call()``, retrying ``TransientError`` per ``policy``.

    ``deadline`` (see ``RetryPolicy.deadline``) defaults to the policy's time budget counted from
    the first failure. ``after`` is the error of a first attempt the caller already made: the
    loop then starts with the first retry's backoff.
    """
    retries = policy.start(deadline)
    error = after
    while True:
        if error is not None and not await retries.wait():
            raise error
        try:
            return await call()
        except TransientError as err:
            error = err

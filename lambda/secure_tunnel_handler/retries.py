"""Retrying AWS calls with capped exponential backoff, within the time the Lambda has left.

botocore's own retry modes also retry ``LimitExceededException`` (the open-tunnel quota, which
no wait fixes) and give up after 3 attempts, so the clients run with one attempt and this module
decides: throttling and transient server errors are retried, everything else surfaces.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from .errors import error_code

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
    }
)


def is_throttling(exc: BaseException) -> bool:
    """The request was refused before doing anything: retrying it is always safe."""
    return error_code(exc) in THROTTLING_CODES


def is_transient(exc: BaseException) -> bool:
    """A server or network failure: the request may or may not have taken effect."""
    if isinstance(exc, ConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return int(status) >= 500
    return False


class Retrier:
    """Retries calls until they succeed, fail for good, or the deadline comes near."""

    def __init__(
        self,
        deadline: float,
        *,
        max_attempts: int = 10,
        base_delay: float = 0.1,
        max_delay: float = 4.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._clock = clock

    def call(
        self,
        fn: Callable[[], T],
        retry_if: Callable[[BaseException], bool] = lambda e: is_throttling(e) or is_transient(e),
    ) -> T:
        """Run ``fn`` and retry it while ``retry_if`` says its error is worth another try."""
        for attempt in self.attempts():
            try:
                return fn()
            except Exception as exc:
                if not retry_if(exc) or not self.may_retry(attempt):
                    raise
        raise AssertionError("unreachable: attempts() always yields")  # pragma: no cover

    def attempts(self) -> Iterator[int]:
        """Attempt numbers from 0; sleeps with full-jitter backoff before each retry."""
        attempt = 0
        while True:
            yield attempt
            self._sleep(self._backoff(attempt))
            attempt += 1

    def expired(self) -> bool:
        """Whether the deadline has passed: from here on only clean-up is worth starting."""
        return self._clock() >= self.deadline

    def may_retry(self, attempt: int) -> bool:
        """Whether another attempt fits in the attempt budget and before the deadline."""
        wait = min(self.max_delay, self.base_delay * 2**attempt)
        return attempt + 1 < self.max_attempts and self._clock() + wait < self.deadline

    def _backoff(self, attempt: int) -> float:
        cap = min(self.max_delay, self.base_delay * 2**attempt)
        return random.uniform(cap / 2, cap)  # noqa: S311 - jitter, not cryptography

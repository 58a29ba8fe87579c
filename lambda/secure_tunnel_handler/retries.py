"""Retrying AWS calls with capped exponential backoff, within the time the Lambda has left.

botocore's own retry modes also retry ``LimitExceededException`` (the open-tunnel quota, which
no wait fixes) and give up after 3 attempts, so the clients run with one attempt and this module
decides: throttling and transient server errors are retried, everything else surfaces.

Access denied is retried too, for a bounded time: a new role, policy or secret tag takes seconds
to propagate through IAM (IAM User Guide, "Changes that I make are not always immediately
visible"), so the first calls of a freshly deployed stack can be denied. The patience is one
window per invocation (:data:`ACCESS_DENIED_PATIENCE_SECONDS` from the first denial), so a
policy that really denies fails in about that time, not that time per call.
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


ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied"})
#: How long after the first denial of an invocation denials are still retried (IAM propagation).
ACCESS_DENIED_PATIENCE_SECONDS = 30.0


def is_access_denied(exc: BaseException) -> bool:
    """IAM refused the call (for good, or until a new role, policy or tag has propagated)."""
    return error_code(exc) in ACCESS_DENIED_CODES


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
        access_denied_patience: float | None = None,
    ) -> None:
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        # Read at construction, so that tests can shorten the module's window.
        self.access_denied_patience = (
            ACCESS_DENIED_PATIENCE_SECONDS if access_denied_patience is None else access_denied_patience
        )
        self._sleep = sleep
        self._clock = clock
        self._first_denial: float | None = None

    def call(
        self,
        fn: Callable[[], T],
        retry_if: Callable[[BaseException], bool] = lambda e: is_throttling(e) or is_transient(e),
        *,
        denial_may_pass: bool = True,
    ) -> T:
        """Run ``fn`` and retry it while ``retry_if`` says its error is worth another try.

        ``denial_may_pass``: retry access denied within the invocation's patience window. False
        where a denial is an answer (a tunnel of another owner, or one AWS has purged).
        """
        for attempt in self.attempts():
            try:
                return fn()
            except Exception as exc:
                retry = retry_if(exc) or (denial_may_pass and self._may_wait_for_iam(exc))
                if not retry or not self.may_retry(attempt, unlimited=is_access_denied(exc)):
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

    def may_retry(self, attempt: int, *, unlimited: bool = False) -> bool:
        """Whether another attempt fits in the attempt budget (unless ``unlimited``: a denial is
        bounded by its patience window instead) and before the deadline."""
        wait = self._cap(attempt)
        within_budget = unlimited or attempt + 1 < self.max_attempts
        return within_budget and self._clock() + wait < self.deadline

    def _may_wait_for_iam(self, exc: BaseException) -> bool:
        """Whether a denial falls in the invocation's window for IAM to propagate."""
        if not is_access_denied(exc):
            return False
        now = self._clock()
        if self._first_denial is None:
            self._first_denial = now
        return now - self._first_denial < self.access_denied_patience

    def _cap(self, attempt: int) -> float:
        # The exponent is bounded: a denial is retried for a time, not a number of attempts.
        return min(self.max_delay, self.base_delay * 2.0 ** min(attempt, 32))

    def _backoff(self, attempt: int) -> float:
        cap = self._cap(attempt)
        return random.uniform(cap / 2, cap)  # noqa: S311 - jitter, not cryptography

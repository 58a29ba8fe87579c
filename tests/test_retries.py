"""The retry policy (secure_tunnel_handler.retries): what is retried, how long, IAM propagation."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from secure_tunnel_handler.retries import Retrier, is_throttling, is_transient
from tests.botocore_errors import client_error


def test_error_classification() -> None:
    assert is_throttling(client_error("ThrottlingException"))
    assert not is_throttling(client_error("LimitExceededException"))
    assert is_transient(client_error("InternalFailureException", 500))
    assert not is_transient(client_error("AccessDeniedException", 403))


def test_retrier_retries_until_success_with_growing_waits() -> None:
    sleeps: list[float] = []
    results = iter([client_error("ThrottlingException"), client_error("ThrottlingException"), "ok"])

    def call() -> str:
        result = next(results)
        if isinstance(result, Exception):
            raise result
        return str(result)

    retrier = Retrier(deadline=1e9, sleep=sleeps.append, clock=lambda: 0.0)
    assert retrier.call(call) == "ok"
    assert len(sleeps) == 2 and 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2


def test_retrier_gives_up_at_the_deadline_and_on_permanent_errors() -> None:
    throttled = client_error("ThrottlingException")
    retrier = Retrier(deadline=1.0, sleep=lambda _: None, clock=lambda: 0.95)
    with pytest.raises(ClientError):
        retrier.call(lambda: (_ for _ in ()).throw(throttled))
    calls = []

    def denied() -> None:
        calls.append(1)
        raise client_error("AccessDeniedException", 403)

    with pytest.raises(ClientError):
        Retrier(deadline=1e9, sleep=lambda _: None).call(denied, denial_may_pass=False)
    assert len(calls) == 1


def test_retrier_waits_for_iam_propagation_within_its_window() -> None:
    now = [0.0]
    calls = []

    def denied() -> str:
        calls.append(now[0])
        if now[0] < 20:
            raise client_error("AccessDeniedException", 403)
        return "ok"

    def sleep(seconds: float) -> None:
        now[0] += seconds

    patient = Retrier(deadline=1e9, sleep=sleep, clock=lambda: now[0], access_denied_patience=30)
    assert patient.call(denied) == "ok", "denied for 20 s, then allowed: a new role's policy arrived"
    assert len(calls) > 10, "more attempts than the throttling budget: the window bounds them"
    calls.clear()
    now[0] = 0.0
    with pytest.raises(ClientError):
        Retrier(deadline=1e9, sleep=sleep, clock=lambda: now[0], access_denied_patience=5).call(denied)
    assert 5 <= calls[-1] < 5 + 4, "a lasting denial fails once the window is over"


def test_retrier_stops_after_max_attempts() -> None:
    calls = []

    def throttled() -> None:
        calls.append(1)
        raise client_error("ThrottlingException")

    with pytest.raises(ClientError):
        Retrier(deadline=1e9, max_attempts=4, sleep=lambda _: None, clock=lambda: 0.0).call(throttled)
    assert len(calls) == 4

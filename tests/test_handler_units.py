"""Unit tests of the handler's pure parts: property parsing, retry policy, log redaction."""

from __future__ import annotations

import logging

import pytest
from botocore.exceptions import ClientError

from secure_tunnel_handler.errors import HandlerError, explain, shorten
from secure_tunnel_handler.properties import InvalidProperties, parse_properties, secret_arns_of
from secure_tunnel_handler.redaction import MASK, TokenRedactor
from secure_tunnel_handler.retries import Retrier, is_throttling, is_transient

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tunnel/source-AbCdEf"


def _client_error(code: str, status: int = 400) -> ClientError:
    body = {"Error": {"Code": code, "Message": "msg"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(body, "OpenTunnel")  # type: ignore[arg-type]


def test_strings_from_cloudformation_are_parsed() -> None:
    spec = parse_properties(
        {
            "DestinationConfig": {"ThingName": "t", "Services": ["SSH"]},
            "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "15"},
            "SourceAccessTokenSecretArn": SECRET,
            "Tags": [{"Key": "env name", "Value": ""}],
            "RotationTrigger": 3,
        }
    )
    assert spec.max_lifetime_minutes == 15
    assert spec.tags == (("env name", ""),)
    assert spec.rotation_trigger == "3"
    assert spec.destination_secret_arn is None
    assert spec.secret_arns == (SECRET,)


def test_all_problems_are_listed_and_the_reason_stays_short() -> None:
    with pytest.raises(InvalidProperties) as caught:
        parse_properties(
            {"A": 1, "B": 2, "Description": "", "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": True}}
        )
    message = str(caught.value)
    assert "unknown properties A, B" in message
    assert "DestinationConfig is required" in message
    assert "(and 2 more)" in message
    assert len(message) <= 250


def test_secret_arns_of_invalid_properties_keeps_only_arns() -> None:
    assert secret_arns_of({"SourceAccessTokenSecretArn": SECRET, "DestinationAccessTokenSecretArn": 5}) == {
        "source": SECRET
    }
    assert secret_arns_of("nonsense") == {}  # type: ignore[arg-type]


def test_error_classification() -> None:
    assert is_throttling(_client_error("ThrottlingException"))
    assert not is_throttling(_client_error("LimitExceededException"))
    assert is_transient(_client_error("InternalFailureException", 500))
    assert not is_transient(_client_error("AccessDeniedException", 403))


def test_retrier_retries_until_success_with_growing_waits() -> None:
    sleeps: list[float] = []
    results = iter([_client_error("ThrottlingException"), _client_error("ThrottlingException"), "ok"])

    def call() -> str:
        result = next(results)
        if isinstance(result, Exception):
            raise result
        return str(result)

    retrier = Retrier(deadline=1e9, sleep=sleeps.append, clock=lambda: 0.0)
    assert retrier.call(call) == "ok"
    assert len(sleeps) == 2 and 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2


def test_retrier_gives_up_at_the_deadline_and_on_permanent_errors() -> None:
    throttled = _client_error("ThrottlingException")
    retrier = Retrier(deadline=1.0, sleep=lambda _: None, clock=lambda: 0.95)
    with pytest.raises(ClientError):
        retrier.call(lambda: (_ for _ in ()).throw(throttled))
    calls = []

    def denied() -> None:
        calls.append(1)
        raise _client_error("AccessDeniedException", 403)

    with pytest.raises(ClientError):
        Retrier(deadline=1e9, sleep=lambda _: None).call(denied, denial_may_pass=False)
    assert len(calls) == 1


def test_retrier_waits_for_iam_propagation_within_its_window() -> None:
    now = [0.0]
    calls = []

    def denied() -> str:
        calls.append(now[0])
        if now[0] < 20:
            raise _client_error("AccessDeniedException", 403)
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
        raise _client_error("ThrottlingException")

    with pytest.raises(ClientError):
        Retrier(deadline=1e9, max_attempts=4, sleep=lambda _: None, clock=lambda: 0.0).call(throttled)
    assert len(calls) == 4


def test_reasons_are_explained_and_shortened() -> None:
    reason = str(explain("Opening the tunnel", _client_error("LimitExceededException")))
    assert reason.startswith("Opening the tunnel failed (LimitExceededException): the account's limit")
    assert (
        str(explain("Step", KeyError("x")))
        == "Step failed: internal error (KeyError); see the function's log"
    )
    assert len(shorten("x" * 1000)) == 250
    assert isinstance(explain("Step", HandlerError("kept")), HandlerError)


def test_redactor_masks_tokens_in_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    redactor = TokenRedactor()
    redactor.remember("tok-1234567890")
    log = logging.getLogger("tests.redaction")
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(redactor)
    try:
        log.info("token tok-1234567890 in message")
        log.info("token %s in args", "tok-1234567890")
        try:
            raise ValueError("tok-1234567890")
        except ValueError:
            log.exception("failed")
    finally:
        caplog.handler.removeFilter(redactor)
    assert "tok-1234567890" not in caplog.text
    assert caplog.text.count(MASK) == 4  # message, argument, source line and exception text


def test_secret_identity_ignores_only_the_random_suffix() -> None:
    from secure_tunnel_handler.properties import same_secret

    full = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tunnel/source-AbCdEf"
    assert same_secret(full, full)
    assert same_secret(full, full.removesuffix("-AbCdEf")), "a partial ARN names the same secret"
    assert same_secret(full.removesuffix("-AbCdEf"), full)
    assert not same_secret(
        full, "arn:aws:secretsmanager:us-east-1:123456789012:secret:tunnel/destination-AbCdEf"
    )
    assert not same_secret(full, full.replace("us-east-1", "eu-west-1"))

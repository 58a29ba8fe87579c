"""Failures that are safe to show to CloudFormation users, and how AWS errors become one."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

# CloudFormation shows the reason in the console; crhelper cuts anything over 256 characters.
MAX_REASON_LENGTH = 250


class HandlerError(Exception):
    """A failure whose message is shown to the user as the CloudFormation reason.

    Messages never contain a token: they are built from property names, ids and AWS error
    messages, which do not echo request payloads.
    """

    def __init__(self, message: str, physical_id: str | None = None) -> None:
        super().__init__(shorten(message))
        #: The physical id to report with the failure (the tunnel id once a tunnel was opened,
        #: so that CloudFormation's Delete closes it if the clean-up here could not).
        self.physical_id = physical_id


def shorten(message: str) -> str:
    """Keep a reason within what CloudFormation displays."""
    if len(message) <= MAX_REASON_LENGTH:
        return message
    return message[: MAX_REASON_LENGTH - 3] + "..."


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError``, else None."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


_ADVICE = {
    "LimitExceededException": (
        "the account's limit of open tunnels is reached; close unused tunnels "
        "(aws iotsecuretunneling list-tunnels / close-tunnel) or request a quota increase, then retry"
    ),
    "AccessDeniedException": "access denied; check the handler role's policy for this action and resource",
    "AccessDenied": "access denied; check the handler role's policy for this action and resource",
    "ResourceNotFoundException": "not found",
    "ThrottlingException": "still throttled after retries; retry the stack operation later",
    "KMSAccessDeniedException": "the handler may not use the secret's KMS key; grant it kms:GenerateDataKey",
}


# Advice that holds for one operation only: Secrets Manager also raises LimitExceededException
# (too many versions or requests), where the open-tunnel quota advice would mislead.
_ADVICE_ONLY_FOR = {"LimitExceededException": "OpenTunnel"}


def explain(step: str, exc: BaseException) -> HandlerError:
    """Turn an AWS failure during ``step`` into a short, actionable HandlerError."""
    if isinstance(exc, HandlerError):
        return exc
    code = error_code(exc)
    if code is not None:
        detail = _ADVICE.get(code)
        operation = getattr(exc, "operation_name", None)
        if _ADVICE_ONLY_FOR.get(code, operation) != operation:
            detail = None
        message = (
            str(exc.response.get("Error", {}).get("Message", "")) if isinstance(exc, ClientError) else ""
        )
        text = f"{step} failed ({code}): {detail}" if detail else f"{step} failed ({code}): {message}"
        return HandlerError(text)
    if isinstance(exc, BotoCoreError):
        return HandlerError(f"{step} failed: {type(exc).__name__}; AWS could not be reached, retry later")
    return HandlerError(f"{step} failed: internal error ({type(exc).__name__}); see the function's log")

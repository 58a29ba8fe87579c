"""Exit codes, the one-line error, and how an AWS error becomes one."""

from __future__ import annotations

from typing import NoReturn

from botocore.exceptions import ClientError

EXIT_ERROR = 1  # AWS or unexpected failure
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well); also: choose among several tunnels
EXIT_TUNNEL_CLOSED = 3  # the tunnel is closed, expired or deleted; or the thing has no OPEN tunnel
EXIT_NO_TOKEN = 4  # the secret holds no token document (yet)
EXIT_ACCESS_DENIED = 5  # IAM refused a call
EXIT_ROTATION_TIMEOUT = 6  # rotate-secret started, AWSCURRENT did not change in time
EXIT_NO_LOCALPROXY = 127  # as a shell says for a command it cannot find

# Errors that say the credentials, not their permissions, are the problem.
CREDENTIAL_CODES = frozenset(
    {
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    }
)
DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied"})


class CliError(Exception):
    """A failure shown to the operator as one line, with the process's exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError ('' if the answer had none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_denied(exc: ClientError) -> bool:
    """IAM refused the call; also a 403 whose body (a proxy's) left botocore without a code."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in DENIED_CODES or (status == 403 and error_code(exc) not in CREDENTIAL_CODES)


def fail_on(exc: ClientError, doing: str, permission: str, *, not_found: str | None = None) -> NoReturn:
    """Raise the CliError for a failed AWS call: ``doing`` says what failed, ``permission`` what
    a denied identity needs, ``not_found`` what a ResourceNotFoundException means."""
    code = error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "")
    if code in CREDENTIAL_CODES:
        raise CliError(f"{doing} failed: your AWS credentials were rejected ({code}): {message}") from None
    if is_denied(exc):
        raise CliError(
            f"access denied {doing}: your identity needs {permission}", EXIT_ACCESS_DENIED
        ) from None
    if code == "ResourceNotFoundException" and not_found:
        raise CliError(f"{doing} failed: {not_found}") from None
    raise CliError(f"{doing} failed ({code}): {message}") from None

"""The token document a token secret holds, and reading and rotating it.

The handler (``secure_tunnel_handler.token_secrets.token_document``) writes one JSON object per
secret; these are the fields the CLI reads (tests/test_cli_things.py ties them to the handler's).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .errors import EXIT_NO_TOKEN, EXIT_ROTATION_TIMEOUT, EXIT_USAGE, CliError, error_code, fail_on

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

# The document's fields the CLI reads.
TUNNEL_ID = "tunnelId"
CLIENT_MODE = "clientMode"
ACCESS_TOKEN = "accessToken"  # noqa: S105 - a field name, not a secret
REGION = "region"
SERVICES = "services"
EXPIRES_AT = "expiresAt"
FIELDS = (TUNNEL_ID, CLIENT_MODE, ACCESS_TOKEN, REGION, SERVICES, EXPIRES_AT)
#: ``clientMode`` of the source token's document.
SOURCE_MODE = "source"

# Secrets Manager answers this when the last rotation failed half-way; it retries that one.
PREVIOUS_ROTATION = "previous rotation"
_NO_SUCH_SECRET = "no such secret in this region (use --region?)"  # noqa: S105 - a message


@dataclass(frozen=True)
class Token:
    """The parts of a token secret's document the CLI uses; the repr hides the token."""

    version_id: str
    tunnel_id: str
    region: str
    services: tuple[str, ...]
    expires_at: datetime
    access_token: str = field(repr=False)


def read_token(secrets: SecretsManagerClient, secret_id: str, *, not_found: str = _NO_SUCH_SECRET) -> Token:
    """The AWSCURRENT document of a source token secret (``not_found``: what to say if there is none)."""
    try:
        response = secrets.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
    except ClientError as exc:
        fail_on(
            exc,
            f"reading secret {secret_id}",
            "secretsmanager:GetSecretValue on the secret",
            not_found=not_found,
        )
    try:
        document = json.loads(response.get("SecretString") or "")
    except ValueError:
        document = None
    if not isinstance(document, dict) or not document.get(ACCESS_TOKEN):
        raise CliError(
            f"secret {secret_id} holds no tunnel token yet: deploy the stack that opens the tunnel first",
            EXIT_NO_TOKEN,
        )
    if document.get(CLIENT_MODE) != SOURCE_MODE:
        raise CliError(
            f"secret {secret_id} holds the {document.get(CLIENT_MODE)} token: connect with the source "
            "token's secret (the destination token is for the device)",
            EXIT_USAGE,
        )
    try:
        return Token(
            version_id=str(response["VersionId"]),
            tunnel_id=str(document[TUNNEL_ID]),
            region=str(document[REGION]),
            services=tuple(str(s) for s in document[SERVICES]),
            expires_at=datetime.fromisoformat(str(document[EXPIRES_AT]).replace("Z", "+00:00")),
            access_token=str(document[ACCESS_TOKEN]),
        )
    except (KeyError, TypeError, ValueError):
        raise CliError(f"secret {secret_id} does not hold a complete token document", EXIT_NO_TOKEN) from None


def rotate(
    secrets: SecretsManagerClient, secret_id: str, before: Token, *, timeout: float, poll: float = 1.0
) -> Token:
    """Start a rotation of the secret and wait until AWSCURRENT is a new version."""
    try:
        secrets.rotate_secret(SecretId=secret_id)
    except ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        # A rotation that failed half-way is retried by Secrets Manager: wait for that one.
        if not (error_code(exc) == "InvalidRequestException" and PREVIOUS_ROTATION in message.lower()):
            fail_on(
                exc,
                f"rotating secret {secret_id}",
                "secretsmanager:RotateSecret on the secret "
                "(and lambda:InvokeFunction on its rotation function)",
                not_found=_NO_SUCH_SECRET,
            )
    deadline = time.monotonic() + timeout
    while True:
        token = read_token(secrets, secret_id)
        if token.version_id != before.version_id:
            return token
        if time.monotonic() >= deadline:
            raise CliError(
                f"the rotation of secret {secret_id} did not finish within {timeout:g} s; the rotation "
                f"function's log ({rotation_log(secrets, secret_id)}) says why",
                EXIT_ROTATION_TIMEOUT,
            )
        time.sleep(poll)


def rotation_log(secrets: SecretsManagerClient, secret_id: str) -> str:
    """Where the rotation function logs: /aws/lambda/<function name>."""
    try:
        arn = str(secrets.describe_secret(SecretId=secret_id).get("RotationLambdaARN") or "")
    except (ClientError, BotoCoreError):
        arn = ""
    name = arn.split(":function:")[-1].split(":")[0] if ":function:" in arn else ""
    return f"/aws/lambda/{name}" if name else "CloudWatch Logs of the rotation function"

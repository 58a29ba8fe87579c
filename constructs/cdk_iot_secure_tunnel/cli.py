"""``secure-tunnel``: reach a device through a tunnel whose tokens live in Secrets Manager.

    secure-tunnel connect --secret-id <source secret> [--rotate] [-s SSH=5555 | -s 5555]
                          [--region R] [--localproxy PATH] [--print-env] [-- localproxy options]

It reads the source token from the secret a ``SecureTunnel`` (a ``Custom::IoTSecureTunnel``
resource) writes, optionally rotates it first (tokens are single-use: every reconnect needs a
fresh one), and replaces itself with ``localproxy`` in source mode. The token is handed over in
the environment variable ``AWSIOT_TUNNEL_ACCESS_TOKEN`` only: a command line is readable by every
user of the machine (``ps``) and ends up in shell history. ``--print-env`` prints the token, on
explicit request, for a localproxy started by hand or elsewhere.

Errors are one line on stderr and an exit code (see ``EXIT_*``); there is no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

TOKEN_VARIABLE = "AWSIOT_TUNNEL_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a secret
DEFAULT_PORT = "5555"
LOCALPROXY_URL = "https://github.com/aws-samples/aws-iot-securetunneling-localproxy"

EXIT_ERROR = 1  # AWS or unexpected failure
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well)
EXIT_TUNNEL_CLOSED = 3  # the tunnel is closed, expired or deleted
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
# Secrets Manager answers this when the last rotation failed half-way; it retries that one.
PREVIOUS_ROTATION = "previous rotation"
_MAPPING_ITEM = re.compile(r"(?:(?P<service>[a-zA-Z0-9:_-]{1,128})=)?(?P<endpoint>[^=,\s]*\d)")
_SECRET_ARN = re.compile(r"arn:[a-z-]+:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:.+")


class CliError(Exception):
    """A failure shown to the operator as one line, with the process's exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Token:
    """The parts of a token secret's document the CLI uses; the repr hides the token."""

    version_id: str
    tunnel_id: str
    region: str
    services: tuple[str, ...]
    expires_at: datetime
    access_token: str = field(repr=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``secure-tunnel``; returns the exit code (``connect`` only returns on error)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.command(args))
    except CliError as exc:
        # One line, whatever an AWS error message held.
        print(f"secure-tunnel: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _command_errors(args: argparse.Namespace) -> int:
    """Run the chosen command; botocore's own errors (no credentials, no network) become CliError."""
    try:
        return int(args.run(args))
    except NoCredentialsError:
        raise CliError("no AWS credentials: configure a profile or set AWS_PROFILE") from None
    except NoRegionError:
        raise CliError("no region: pass --region or set AWS_DEFAULT_REGION", EXIT_USAGE) from None
    except BotoCoreError as exc:
        raise CliError(f"AWS could not be reached: {exc}") from None


def connect(args: argparse.Namespace) -> int:
    """Read (and optionally rotate) the source token, then run localproxy with it."""
    localproxy = args.localproxy or "localproxy"
    # Find localproxy before anything else: a rotation revokes the token in use for nothing if
    # the new one cannot be used here.
    executable = localproxy if args.print_env else _find_localproxy(localproxy)
    session = _session(args.region, args.secret_id)
    secrets = session.client("secretsmanager", config=_CONFIG)
    token = read_token(secrets, args.secret_id)
    _check_open(session, token)
    if args.rotate:
        token = rotate(secrets, args.secret_id, token, timeout=args.rotate_timeout)
    mapping = _mapping(args.services, token.services)
    extra = args.localproxy_args[1:] if args.localproxy_args[:1] == ["--"] else args.localproxy_args
    command = [executable, "-r", token.region, "-s", mapping, *extra]
    if args.print_env:
        # The one place a token is printed: asked for, to stdout only.
        print(f"export {TOKEN_VARIABLE}={shlex.quote(token.access_token)}")
        print(shlex.join(command))
        return 0
    return _run(command, {**os.environ, TOKEN_VARIABLE: token.access_token})


def read_token(secrets: Any, secret_id: str) -> Token:
    """The AWSCURRENT document of a source token secret."""
    try:
        response = secrets.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
    except ClientError as exc:
        _fail_on(exc, f"reading secret {secret_id}", "secretsmanager:GetSecretValue on the secret")
    try:
        document = json.loads(response.get("SecretString") or "")
    except ValueError:
        document = None
    if not isinstance(document, dict) or not document.get("accessToken"):
        raise CliError(
            f"secret {secret_id} holds no tunnel token yet: deploy the stack that opens the tunnel first",
            EXIT_NO_TOKEN,
        )
    if document.get("clientMode") != "source":
        raise CliError(
            f"secret {secret_id} holds the {document.get('clientMode')} token: connect with the source "
            "token's secret (the destination token is for the device)",
            EXIT_USAGE,
        )
    try:
        return Token(
            version_id=str(response["VersionId"]),
            tunnel_id=str(document["tunnelId"]),
            region=str(document["region"]),
            services=tuple(str(s) for s in document["services"]),
            expires_at=datetime.fromisoformat(str(document["expiresAt"]).replace("Z", "+00:00")),
            access_token=str(document["accessToken"]),
        )
    except (KeyError, TypeError, ValueError):
        raise CliError(f"secret {secret_id} does not hold a complete token document", EXIT_NO_TOKEN) from None


def rotate(secrets: Any, secret_id: str, before: Token, *, timeout: float, poll: float = 1.0) -> Token:
    """Start a rotation of the secret and wait until AWSCURRENT is a new version."""
    try:
        secrets.rotate_secret(SecretId=secret_id)
    except ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        # A rotation that failed half-way is retried by Secrets Manager: wait for that one.
        if not (_code(exc) == "InvalidRequestException" and PREVIOUS_ROTATION in message.lower()):
            _fail_on(
                exc,
                f"rotating secret {secret_id}",
                "secretsmanager:RotateSecret on the secret "
                "(and lambda:InvokeFunction on its rotation function)",
            )
    deadline = time.monotonic() + timeout
    while True:
        token = read_token(secrets, secret_id)
        if token.version_id != before.version_id:
            return token
        if time.monotonic() >= deadline:
            raise CliError(
                f"the rotation of secret {secret_id} did not finish within {timeout:g} s; the rotation "
                f"function's log ({_rotation_log(secrets, secret_id)}) says why",
                EXIT_ROTATION_TIMEOUT,
            )
        time.sleep(poll)


# --- helpers -----------------------------------------------------------------------------------

# Operators wait at a prompt: a few retries, not botocore's long standard backoff.
_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 4}, connect_timeout=5, read_timeout=30)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secure-tunnel",
        description="Connect to a device through an AWS IoT Secure Tunnel whose tokens are in "
        "Secrets Manager.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    run = commands.add_parser(
        "connect",
        help="run localproxy in source mode with the tunnel's source token",
        description=(
            "Read the source token from its secret (optionally rotating it first: tokens are single-use) "
            f"and run localproxy with it in {TOKEN_VARIABLE}. Options after -- go to localproxy."
        ),
    )
    run.set_defaults(command=_command_errors, run=connect)
    run.add_argument("--secret-id", required=True, help="ARN or name of the source token secret")
    run.add_argument(
        "--rotate", action="store_true", help="get a fresh token first (revokes the current one)"
    )
    run.add_argument(
        "-s",
        "--source-listen",
        dest="services",
        action="append",
        default=[],
        metavar="MAPPING",
        help=f"local port(s): 5555, or SSH=5555,HTTP=8080 (default: {DEFAULT_PORT} for a one-service tunnel)",
    )
    run.add_argument(
        "--region", help="region of the secret (default: the ARN's, then the AWS configuration's)"
    )
    run.add_argument("--localproxy", metavar="PATH", help="the localproxy executable (default: from PATH)")
    run.add_argument(
        "--print-env",
        action="store_true",
        help="print the export line with the token and the localproxy command instead of running it",
    )
    run.add_argument(
        "--rotate-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long --rotate waits for the new token (default: 60)",
    )
    run.add_argument("localproxy_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _find_localproxy(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        where = "is not executable" if os.sep in name else "is not on PATH"
        raise CliError(
            f"localproxy {name!r} {where}: install it ({LOCALPROXY_URL}) or pass --localproxy PATH",
            EXIT_NO_LOCALPROXY,
        )
    return found


def _session(region: str | None, secret_id: str) -> Any:
    """A session in the secret's region: --region, else the ARN's, else the AWS configuration's."""
    arn = _SECRET_ARN.fullmatch(secret_id)
    session = boto3.session.Session(region_name=region or (arn.group("region") if arn else None))
    if not session.region_name and os.environ.get("AWS_REGION"):
        # Set in Lambda, CloudShell and CodeBuild; botocore reads only AWS_DEFAULT_REGION.
        session = boto3.session.Session(region_name=os.environ["AWS_REGION"])
    if not session.region_name:
        raise CliError("no region: pass --region or a secret ARN, or set AWS_DEFAULT_REGION", EXIT_USAGE)
    return session


def _check_open(session: Any, token: Token) -> None:
    """Fail early on a tunnel that is closed: its token, rotated or not, can never connect."""
    advice = "update the stack to open a new tunnel (e.g. change the resource's RotationTrigger)"
    if token.expires_at <= datetime.now(UTC):
        raise CliError(
            f"tunnel {token.tunnel_id} expired at {token.expires_at:%Y-%m-%dT%H:%M:%SZ}: {advice}",
            EXIT_TUNNEL_CLOSED,
        )
    try:
        client = session.client("iotsecuretunneling", region_name=token.region, config=_CONFIG)
        status = client.describe_tunnel(tunnelId=token.tunnel_id)["tunnel"].get("status")
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            raise CliError(
                f"tunnel {token.tunnel_id} no longer exists: {advice}", EXIT_TUNNEL_CLOSED
            ) from None
        return  # e.g. no iot:DescribeTunnel permission: the expiry check above has to do
    except BotoCoreError:
        return
    if status != "OPEN":
        raise CliError(f"tunnel {token.tunnel_id} is {status}: {advice}", EXIT_TUNNEL_CLOSED)


def _mapping(given: list[str], services: tuple[str, ...]) -> str:
    """localproxy's ``-s`` value: the operator's, checked against the tunnel's services."""
    if not given:
        if len(services) > 1:
            example = ",".join(f"{s}={int(DEFAULT_PORT) + i}" for i, s in enumerate(services))
            raise CliError(
                f"the tunnel has services {', '.join(services)}: choose ports, e.g. -s {example}", EXIT_USAGE
            )
        return DEFAULT_PORT
    items = [item for value in given for item in value.split(",") if item]
    for item in items:
        match = _MAPPING_ITEM.fullmatch(item)
        if match is None:
            raise CliError(f"bad -s value {item!r}: expected PORT or SERVICE=PORT", EXIT_USAGE)
        if match.group("service") and match.group("service") not in services:
            raise CliError(
                f"-s names service {match.group('service')!r}; the tunnel has {', '.join(services)}",
                EXIT_USAGE,
            )
    return ",".join(items)


def _run(command: list[str], env: dict[str, str]) -> int:
    """Become localproxy (POSIX), so that signals and the exit status are its own."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(command[0], command, env)  # noqa: S606 - argv holds no token; the env does
    return subprocess.run(command, env=env, check=False).returncode  # noqa: S603 - as above


def _rotation_log(secrets: Any, secret_id: str) -> str:
    """Where the rotation function logs: /aws/lambda/<function name>."""
    try:
        arn = str(secrets.describe_secret(SecretId=secret_id).get("RotationLambdaARN") or "")
    except (ClientError, BotoCoreError):
        arn = ""
    name = arn.split(":function:")[-1].split(":")[0] if ":function:" in arn else ""
    return f"/aws/lambda/{name}" if name else "CloudWatch Logs of the rotation function"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _fail_on(exc: ClientError, doing: str, permission: str) -> NoReturn:
    code = _code(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = exc.response.get("Error", {}).get("Message", "")
    if code in CREDENTIAL_CODES:
        raise CliError(f"{doing} failed: your AWS credentials were rejected ({code}): {message}") from None
    # Any other 403 is a denial, also when a proxy's body left botocore without an error code.
    if code in {"AccessDeniedException", "AccessDenied"} or status == 403:
        denied = f"access denied {doing}: your identity needs {permission}"
        raise CliError(denied, EXIT_ACCESS_DENIED) from None
    if code == "ResourceNotFoundException":
        raise CliError(f"{doing} failed: no such secret in this region (use --region?)") from None
    raise CliError(f"{doing} failed ({code}): {message}") from None


if __name__ == "__main__":
    sys.exit(main())

"""``secure-tunnel``: reach a device through a tunnel whose tokens live in Secrets Manager.

    secure-tunnel connect (--secret-id <source secret> | --thing NAME) [--rotate]
                          [-s SSH=5555 | -s 5555] [--region R] [--localproxy PATH]
                          [--print-env] [-- localproxy options]
    secure-tunnel list [--thing NAME] [--region R] [--json]
    secure-tunnel --version

``connect`` reads the source token from the secret a ``SecureTunnel`` (a
``Custom::IoTSecureTunnel`` resource) writes, optionally rotates it first (tokens are single-use:
every reconnect needs a fresh one), and replaces itself with ``localproxy`` in source mode, the
token in its environment only. ``--thing`` finds the secret from the thing's one OPEN tunnel that
this project opened. ``list`` shows this project's tunnels, never a token.

Errors are one line on stderr and an exit code (:mod:`secure_tunnel_cli.errors`); no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, EndpointConnectionError, NoCredentialsError, NoRegionError

from . import localproxy
from .errors import EXIT_ERROR, EXIT_USAGE, CliError
from .localproxy import DEFAULT_PORT, TOKEN_VARIABLE
from .token_document import Token, read_token, rotate
from .tunnels import ProjectTunnel, check_open, find_tunnels, tunnel_for_thing

if TYPE_CHECKING:
    from mypy_boto3_iotsecuretunneling import IoTSecureTunnelingClient

DISTRIBUTION = "iot-secure-tunnel-cli"
#: Attempts per AWS call: operators wait at a prompt, so a few, not botocore's long backoff.
DEFAULT_MAX_ATTEMPTS = 4
# Region names of every partition (botocore's partitions.json): us-east-1, us-gov-west-1,
# cn-north-1, us-iso-east-1, eu-isoe-west-1, eusc-de-east-1, ...
REGION_RE = re.compile(r"[a-z]{2,4}(?:-[a-z]+)+-[0-9]{1,2}")
THING_RE = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_SECRET_ARN = re.compile(r"arn:[a-z-]+:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:.+")


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
    except EndpointConnectionError as exc:
        # Also a region that does not exist: its endpoint's name does not resolve.
        endpoint = exc.kwargs.get("endpoint_url") or "the AWS endpoint"
        raise CliError(
            f"could not connect to {endpoint}: check the region (--region) and your network"
        ) from None
    except BotoCoreError as exc:
        raise CliError(f"AWS could not be reached: {exc}") from None


def connect(args: argparse.Namespace) -> int:
    """Read (and optionally rotate) the source token, then run localproxy with it."""
    name = args.localproxy or "localproxy"
    # Find localproxy before anything else: a rotation revokes the token in use for nothing if
    # the new one cannot be used here.
    executable = name if args.print_env else localproxy.find(name)
    if args.thing is not None:
        session = _session(args.region, None, what="--region or set AWS_DEFAULT_REGION")
        tunnels = session.client("iotsecuretunneling", config=_config())
        listing = find_tunnels(tunnels, thing=args.thing, open_only=True)
        tunnel = tunnel_for_thing(listing, args.thing, str(session.region_name))
        secret_id = str(tunnel.source_secret)
        arn = _SECRET_ARN.fullmatch(secret_id)
        region = arn.group("region") if arn else session.region_name
        secrets = session.client("secretsmanager", region_name=region, config=_config())
        token = read_token(
            secrets,
            secret_id,
            not_found=f"no such secret (tunnel {tunnel.tunnel_id}'s source secret; Secrets Manager "
            "takes a partial ARN whose name ends in a hyphen and 6 characters for a full ARN: connect "
            "with --secret-id and the secret's full ARN)",
        )
        _check_same_tunnel(token, tunnel, secret_id)
    else:
        secret_id = args.secret_id
        session = _session(args.region, secret_id, what="--region or a secret ARN, or set AWS_DEFAULT_REGION")
        secrets = session.client("secretsmanager", config=_config())
        token = read_token(secrets, secret_id)
    _check_open(session, token)
    if args.rotate:
        token = rotate(secrets, secret_id, token, timeout=args.rotate_timeout)
    ports = localproxy.mapping(args.services, token.services)
    extra = args.localproxy_args[1:] if args.localproxy_args[:1] == ["--"] else args.localproxy_args
    command = [executable, "-r", token.region, "-s", ports, *extra]
    if args.print_env:
        localproxy.print_env(command, token.access_token)
        return 0
    return localproxy.run(command, token.access_token)


def list_tunnels(args: argparse.Namespace) -> int:
    """Print this project's tunnels (OPEN, and CLOSED ones AWS still lists); never a token."""
    session = _session(args.region, None, what="--region or set AWS_DEFAULT_REGION")
    client: IoTSecureTunnelingClient = session.client("iotsecuretunneling", config=_config())
    listing = find_tunnels(client, thing=args.thing, open_only=False)
    if args.json:
        print(json.dumps([_as_json(t) for t in listing.tunnels], indent=2))
    elif listing.tunnels:
        print(_table(listing.tunnels))
    else:
        of = f" to thing {args.thing}" if args.thing else ""
        print(f"no tunnels{of} opened by this project in {session.region_name}")
    if listing.denied:
        print(
            f"secure-tunnel: note: {listing.denied} tunnel(s) not shown: iot:DescribeTunnel was denied "
            "(this is expected for tunnels this project did not open)",
            file=sys.stderr,
        )
    return 0


# --- helpers -----------------------------------------------------------------------------------


def _config() -> Config:
    """A few retries (AWS_MAX_ATTEMPTS, if set, instead of 4) and short timeouts."""
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "")
    total = int(attempts) if attempts.isdigit() and int(attempts) > 0 else DEFAULT_MAX_ATTEMPTS
    return Config(
        retries={"mode": "standard", "total_max_attempts": total}, connect_timeout=5, read_timeout=30
    )


def _session(region: str | None, secret_id: str | None, *, what: str) -> boto3.session.Session:
    """A session in the right region: --region, else the secret ARN's, else the AWS configuration's,
    else AWS_REGION."""
    arn = _SECRET_ARN.fullmatch(secret_id) if secret_id else None
    session = boto3.session.Session(region_name=region or (arn.group("region") if arn else None))
    if not session.region_name and os.environ.get("AWS_REGION"):
        # Set in Lambda, CloudShell and CodeBuild; botocore reads only AWS_DEFAULT_REGION.
        session = boto3.session.Session(region_name=os.environ["AWS_REGION"])
    if not session.region_name:
        raise CliError(f"no region: pass {what}", EXIT_USAGE)
    return session


def _check_open(session: boto3.session.Session, token: Token) -> None:
    try:
        client = session.client("iotsecuretunneling", region_name=token.region, config=_config())
    except BotoCoreError:
        return  # e.g. a region botocore cannot build an endpoint for: localproxy will say
    check_open(client, token)


def _check_same_tunnel(token: Token, tunnel: ProjectTunnel, secret_id: str) -> None:
    if token.tunnel_id != tunnel.tunnel_id:
        raise CliError(
            f"secret {secret_id} holds the token of tunnel {token.tunnel_id}, not of tunnel "
            f"{tunnel.tunnel_id} (thing {tunnel.thing_name}'s OPEN tunnel): a stack update may be under "
            "way; try again, or connect with --secret-id",
            EXIT_ERROR,
        )


def _when(tunnel: ProjectTunnel) -> str | None:
    return f"{tunnel.expires_at:%Y-%m-%dT%H:%M:%SZ}" if tunnel.expires_at else None


def _as_json(tunnel: ProjectTunnel) -> dict[str, Any]:
    return {
        "tunnelId": tunnel.tunnel_id,
        "status": tunnel.status,
        "thingName": tunnel.thing_name,
        "services": list(tunnel.services),
        "expiresAt": _when(tunnel),
        "sourceSecret": tunnel.source_secret,
        "owner": tunnel.owner,
    }


def _table(tunnels: list[ProjectTunnel]) -> str:
    rows = [("TUNNEL ID", "STATUS", "THING", "SERVICES", "EXPIRES", "SOURCE SECRET")]
    rows += [
        (
            t.tunnel_id,
            t.status,
            t.thing_name or "-",
            ",".join(t.services) or "-",
            _when(t) or "-",
            t.source_secret or "unknown",
        )
        for t in tunnels
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


def region_name(value: str) -> str:
    """argparse type of --region: a region name of any partition."""
    if not REGION_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an AWS region name (e.g. eu-west-1, us-gov-west-1, cn-north-1)"
        )
    return value


def thing_name(value: str) -> str:
    """argparse type of --thing: an IoT thing name."""
    if not THING_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a thing name ([a-zA-Z0-9:_-], 1-128 characters)")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line as every other failure (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"secure-tunnel: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="secure-tunnel",
        description="Connect to a device through an AWS IoT Secure Tunnel whose tokens are in "
        "Secrets Manager.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--secret-id", help="ARN or name of the source token secret")
    which.add_argument(
        "--thing",
        type=thing_name,
        metavar="NAME",
        help="the thing's one OPEN tunnel opened by this project (its source secret from the tunnel's tags)",
    )
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
        "--region",
        type=region_name,
        help="region of the secret, or with --thing of the tunnel (default: the secret ARN's, then the "
        "AWS configuration's)",
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

    show = commands.add_parser(
        "list",
        help="list the tunnels this project opened (never a token)",
        description="The OPEN tunnels this project opened, and the CLOSED ones AWS still lists (for at "
        "least three hours after they closed).",
    )
    show.set_defaults(command=_command_errors, run=list_tunnels)
    show.add_argument("--thing", type=thing_name, metavar="NAME", help="only the tunnels to this thing")
    show.add_argument(
        "--region", type=region_name, help="region of the tunnels (default: the AWS configuration's)"
    )
    show.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    return parser

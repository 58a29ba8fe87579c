"""Running localproxy in source mode: finding it, its ``-s`` mapping, and handing over the token.

The token goes to localproxy in the environment variable :data:`TOKEN_VARIABLE` only: a command
line is readable by every user of the machine (``ps``) and ends up in shell history.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

from .errors import EXIT_NO_LOCALPROXY, EXIT_USAGE, CliError

TOKEN_VARIABLE = "AWSIOT_TUNNEL_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a secret
DEFAULT_PORT = "5555"
LOCALPROXY_URL = "https://github.com/aws-samples/aws-iot-securetunneling-localproxy"
_MAPPING_ITEM = re.compile(r"(?:(?P<service>[a-zA-Z0-9:_-]{1,128})=)?(?P<endpoint>[^=,\s]*\d)")


def find(name: str) -> str:
    """The localproxy executable's path (``name`` from PATH, or a path)."""
    found = shutil.which(name)
    if found is None:
        where = "is not executable" if os.sep in name else "is not on PATH"
        raise CliError(
            f"localproxy {name!r} {where}: install it ({LOCALPROXY_URL}) or pass --localproxy PATH",
            EXIT_NO_LOCALPROXY,
        )
    return found


def mapping(given: list[str], services: tuple[str, ...]) -> str:
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


def print_env(command: list[str], token: str) -> None:
    """The one place a token is printed: asked for (--print-env), to stdout only."""
    print(f"export {TOKEN_VARIABLE}={shlex.quote(token)}")
    print(shlex.join(command))


def run(command: list[str], token: str) -> int:
    """Become localproxy (POSIX), so that signals and the exit status are its own; the token is in
    its environment, never in ``command``."""
    env = {**os.environ, TOKEN_VARIABLE: token}
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(command[0], command, env)  # noqa: S606 - argv holds no token; the env does
    return subprocess.run(command, env=env, check=False).returncode  # noqa: S603 - as above

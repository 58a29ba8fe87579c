"""The ``iot-secure-tunnel-cli`` distribution (cli/): what its wheel holds, that it needs nothing of
the construct library, and that the constants it shares with the handler are the handler's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from email.parser import Parser
from pathlib import Path

import pytest

from secure_tunnel_cli import commands, localproxy, token_document, tunnels
from secure_tunnel_handler import contract, properties
from tests.rig.harness import SECRET_DOCUMENT_FIELDS
from tests.wheels import build_wheel

ROOT = Path(__file__).resolve().parents[1]
CLI_DIR = ROOT / "cli"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """``pip wheel ./cli``, as an operator's pip builds it."""
    return build_wheel(CLI_DIR, tmp_path_factory.mktemp("wheel"), "iot_secure_tunnel_cli-*.whl")


def _metadata(wheel: zipfile.ZipFile) -> tuple[str, dict[str, list[str]]]:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(name).decode())
    return name.removesuffix("METADATA"), {k: message.get_all(k) or [] for k in set(message.keys())}


def test_the_wheel_ships_the_license_and_needs_boto3_only(wheel: zipfile.ZipFile) -> None:
    dist_info, metadata = _metadata(wheel)

    assert metadata["Name"] == ["iot-secure-tunnel-cli"]
    assert metadata["Requires-Dist"] == ["boto3>=1.40"]
    assert metadata["Requires-Python"] == [">=3.11"]
    assert metadata["License-Expression"] == ["Apache-2.0"]
    assert metadata["License-File"] == ["LICENSE"]
    shipped = wheel.read(f"{dist_info}licenses/LICENSE")
    assert shipped == (CLI_DIR / "LICENSE").read_bytes()
    assert b"Apache License" in shipped[:200] and b"Version 2.0, January 2004" in shipped[:200]
    entry_points = wheel.read(f"{dist_info}entry_points.txt").decode()
    assert re.search(r"^secure-tunnel ?= ?secure_tunnel_cli\.commands:main$", entry_points, re.MULTILINE)
    packages = {n.split("/")[0] for n in wheel.namelist() if not n.startswith(dist_info)}
    assert packages == {"secure_tunnel_cli"}


def _terms(text: str) -> str:
    """The license's terms, whitespace-normalized (an optional APPENDIX follows them)."""
    body = text[text.index("TERMS AND CONDITIONS") : text.index("END OF TERMS AND CONDITIONS")]
    return " ".join(body.split())


def test_the_cli_license_is_the_repositorys() -> None:
    ours = _terms((CLI_DIR / "LICENSE").read_text())
    assert ours.startswith("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION 1. Definitions.")
    assert "9. Accepting Warranty or Additional Liability." in ours
    assert _terms((ROOT / "LICENSE").read_text()) == ours, (
        "cli/LICENSE must be a copy of the repository's LICENSE"
    )


def test_the_cli_imports_nothing_of_the_construct_library_or_the_handler() -> None:
    probe = (
        "import json, sys, secure_tunnel_cli.commands\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))

    assert {"secure_tunnel_cli", "boto3", "botocore"} <= loaded
    assert not loaded & {"aws_cdk", "constructs", "jsii", "cdk_iot_secure_tunnel", "secure_tunnel_handler"}


def test_the_constants_the_cli_shares_with_the_handler_are_the_handlers() -> None:
    # The CLI is its own distribution (boto3 only): it keeps copies, which must be the contract's.
    assert tunnels.OWNER_TAG == contract.OWNER_TAG_KEY
    assert contract.SECRET_TAG_KEYS["source"] == tunnels.SOURCE_SECRET_TAG
    assert tunnels.DEFAULT_LIFETIME_MINUTES == contract.DEFAULT_LIFETIME_MINUTES
    # Thing and service names.
    assert commands.THING_RE.pattern == contract.NAME_RE.pattern
    assert f"(?P<service>{contract.NAME_RE.pattern})" in localproxy._MAPPING_ITEM.pattern
    short = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tunnel/source-AbCdEf"
    long = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{'a' * 250}-AbCdEf"
    assert not properties.binding_of(short).startswith(tunnels.HASHED_BINDING_PREFIX)
    assert properties.binding_of(long).startswith(tunnels.HASHED_BINDING_PREFIX)
    # The token document's keys the CLI reads are the contract's (its clientMode, from the real
    # handler: tests/test_cli_things.py), and so is the time format it parses.
    assert set(token_document.FIELDS) <= set(SECRET_DOCUMENT_FIELDS) == set(contract.DOCUMENT_KEYS.values())
    expires_at = datetime(2030, 1, 1, tzinfo=UTC)
    assert datetime.fromisoformat(contract.format_time(expires_at).replace("Z", "+00:00")) == expires_at

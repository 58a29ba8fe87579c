"""The operator's machine for the ``secure-tunnel`` CLI tests: the CLI as its own process, with the
rig's endpoints in its environment and a stand-in ``localproxy`` that records its argv and
environment (tests/test_cli.py, tests/test_cli_things.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secure_tunnel_cli.localproxy import TOKEN_VARIABLE
from tests.conftest import assert_no_token_leaked, tunnel_id_of
from tests.rig.harness import ADMIN_ACCESS_KEY, Handler, Rig
from tests.rig.secrets_rotation import FUNCTION_ARN, SecretsManagerRotation

# The distribution's module (installed from cli/, editable): what the console script runs.
CLI = [sys.executable, "-m", "secure_tunnel_cli"]


@dataclass
class Run:
    """One run of the CLI: exit code, output, and what the stand-in localproxy recorded."""

    code: int
    stdout: str
    stderr: str
    localproxy: dict[str, Any] | None

    @property
    def error(self) -> str:
        """The one line of stderr a failure gives."""
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in self.stderr, self.stderr
        assert lines[0].startswith("secure-tunnel: ")
        return lines[0]


@dataclass
class Operator:
    """The operator's machine: PATH with (or without) the stand-in localproxy, and the CLI."""

    rig: Rig
    tmp_path: Path
    bin_dir: Path
    record: Path

    def run(self, *args: str, localproxy_on_path: bool = True, env: dict[str, str] | None = None) -> Run:
        """``secure-tunnel ARGS``; whatever happened, no issued token is in its output (stdout is
        exempt with --print-env only), by the rig's own leak scan."""
        path = os.environ["PATH"]
        environment = {
            **os.environ,
            "PATH": f"{self.bin_dir}{os.pathsep}{path}" if localproxy_on_path else path,
            # The operator's own credentials: the handler's policy does not bind them.
            "AWS_ACCESS_KEY_ID": ADMIN_ACCESS_KEY,
        }
        environment.update(env or {})
        self.record.unlink(missing_ok=True)
        done = subprocess.run(
            [*CLI, *args], env=environment, capture_output=True, text=True, timeout=60, check=False
        )
        recorded = json.loads(self.record.read_text()) if self.record.exists() else None
        run = Run(done.returncode, done.stdout, done.stderr, recorded)
        assert_no_token_leaked(
            self.rig, *([run.stderr] if "--print-env" in args else [run.stderr, run.stdout])
        )
        return run

    def connect(self, *args: str, localproxy_on_path: bool = True, env: dict[str, str] | None = None) -> Run:
        """``secure-tunnel connect ARGS``."""
        return self.run("connect", *args, localproxy_on_path=localproxy_on_path, env=env)


def make_operator(rig: Rig, tmp_path: Path) -> Operator:
    """A stand-in localproxy first on PATH that records its argv and environment, then exits."""
    bin_dir, record = tmp_path / "bin", tmp_path / "localproxy-run.json"
    bin_dir.mkdir()
    script = bin_dir / "localproxy"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'w') as f:\n"
        "    json.dump({'argv': sys.argv, 'env': dict(os.environ)}, f)\n"
    )
    script.chmod(0o755)
    return Operator(rig, tmp_path, bin_dir, record)


def deploy(rig: Rig, handler: Handler, **props: Any) -> str:
    """Create a ``Custom::IoTSecureTunnel`` through the real handler; returns the tunnel id."""
    return tunnel_id_of(rig.send(handler, "Create", rig.properties(**props)))


def configure_source_rotation(rig: Rig) -> None:
    """Make the handler the source secret's rotation function, as the construct does, without
    rotating (``RotateImmediately=False`` runs only Secrets Manager's configuration test)."""
    rig.secrets.rotate_secret(
        SecretId=rig.source_secret, RotationLambdaARN=FUNCTION_ARN, RotateImmediately=False
    )


def assert_connected_with_a_fresh_token(
    run: Run, rig: Rig, rotation: SecretsManagerRotation, before: str
) -> str:
    """``connect --rotate`` ran the whole rotation and gave localproxy the new source token, which
    the secret now holds; the token ``before`` it is revoked. Returns the new token."""
    assert run.code == 0, run.stderr
    assert rotation.failures == [] and [e["Step"] for e in rotation.invocations][-1] == "finishSecret"
    assert run.localproxy is not None
    fresh: str = run.localproxy["env"][TOKEN_VARIABLE]
    assert fresh != before and fresh == rig.secret(rig.source_secret)["accessToken"]
    assert rig.tunnels.is_token_valid(fresh) and not rig.tunnels.is_token_valid(before)
    return fresh

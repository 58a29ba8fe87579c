"""The integration test's snapshot: synthesize ``integ_secure_tunnel.py`` and compare the result with
the committed ``integ_secure_tunnel.py.snapshot/`` (no AWS account, no network).

integ-runner would do this itself, but no integ-runner release can read the cloud assembly that
aws-cdk-lib 2.275 writes (schema 55; integ-runner 2.197.10 reads up to 53), so this module does
what its snapshot check does, in the same layout: the snapshot is the synthesized cloud assembly
without the asset directories, and it is compared template by template. Asset hashes are compared
too (the test sets ``diff_assets=True``: the handler's code is what is under test). One thing is
normalized: integ-tests gives each assertion a ``salt`` property, the synth time, so that
CloudFormation runs it on every deploy.

``python integ/snapshot.py check`` compares (exit 1 on a difference); ``update`` rewrites the
snapshot when it differs (``make integ-snapshot``). An updated snapshot is only synthesized, not
deployed: ``make integ`` is what shows that it works on AWS.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
TEST_APP = HERE / "integ_secure_tunnel.py"
SNAPSHOT_DIR = HERE / f"{TEST_APP.name}.snapshot"
SALT = "<salt: the synth time>"

Json = dict[str, Any]


def synth_environment() -> dict[str, str]:
    """The environment of a synth: no AWS credentials or profile, no CDK_ or AWS_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDK_", "AWS_", "PYTHONPATH"))}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def synthesize(outdir: Path, timeout: float = 300) -> Path:
    """Run the test app as integ-runner would (``python integ_secure_tunnel.py`` in ``integ/``),
    writing its cloud assembly to ``outdir``."""
    env = synth_environment()
    env["CDK_OUTDIR"] = str(outdir)
    done = subprocess.run(  # noqa: S603 - our own interpreter and file
        [sys.executable, TEST_APP.name],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"synthesis of {TEST_APP.name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return outdir


def _normalize(node: Any) -> Any:
    if isinstance(node, list):
        return [_normalize(x) for x in node]
    if isinstance(node, dict):
        return {k: SALT if k == "salt" else _normalize(v) for k, v in node.items()}
    return node


def _read(path: Path) -> Json:
    document: Json = json.loads(path.read_text())
    return document


def compared_documents(assembly: Path) -> dict[str, Any]:
    """What the comparison looks at: the test manifest (stacks, hooks, options), each stack's
    dependencies, and every stack's template with the salts normalized."""
    manifest = _read(assembly / "manifest.json")
    stacks = {
        name: sorted(d for d in artifact.get("dependencies", []) if not d.endswith(".assets"))
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    documents: dict[str, Any] = {"integ.json": _read(assembly / "integ.json"), "stacks": stacks}
    for name in stacks:
        template = manifest["artifacts"][name]["properties"]["templateFile"]
        documents[template] = _normalize(_read(assembly / template))
    return documents


def differences(expected: Path, actual: Path) -> list[str]:
    """Unified diffs between the snapshot (``expected``) and a fresh synth (``actual``)."""
    if not (expected / "manifest.json").exists():
        return [f"no snapshot in {expected}"]
    old, new = compared_documents(expected), compared_documents(actual)
    found: list[str] = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        before = json.dumps(old.get(key), indent=1, sort_keys=True).splitlines()
        after = json.dumps(new.get(key), indent=1, sort_keys=True).splitlines()
        diff = difflib.unified_diff(before, after, f"snapshot/{key}", f"synth/{key}", lineterm="", n=2)
        found.append("\n".join(list(diff)[:200]))
    return found


def write_snapshot(assembly: Path, snapshot: Path = SNAPSHOT_DIR) -> None:
    """Replace ``snapshot`` by ``assembly`` without its asset directories (as integ-runner does
    for a test without the update workflow)."""
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(assembly, snapshot, ignore=shutil.ignore_patterns("asset.*", ".cache"))


def main(argv: list[str] | None = None) -> int:
    """``check`` or ``update`` the committed snapshot."""
    parser = argparse.ArgumentParser(description="Check or update the integration test's snapshot.")
    parser.add_argument("command", choices=("check", "update"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="integ-synth-") as scratch:
        actual = synthesize(Path(scratch) / "cdk.out")
        found = differences(SNAPSHOT_DIR, actual)
        if not found:
            print(f"{SNAPSHOT_DIR.relative_to(REPO_ROOT)} is up to date")
            return 0
        if args.command == "check":
            print("\n\n".join(found))
            print("\nThe snapshot differs from a fresh synth: run `make integ-snapshot` (and `make integ`).")
            return 1
        write_snapshot(actual)
        print(f"{SNAPSHOT_DIR.relative_to(REPO_ROOT)} updated ({len(found)} document(s) changed)")
        return 0


if __name__ == "__main__":
    sys.exit(main())

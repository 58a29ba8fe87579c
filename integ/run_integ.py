"""``make integ``: run the integration test on a real AWS account, the way integ-runner does.

integ-runner itself cannot read the cloud assembly of aws-cdk-lib 2.275 (schema 55; its latest
release, 2.197.10, reads up to 53), so this script does its deploy workflow with the project's
pinned CDK CLI (node_modules/.bin/cdk), from the test's own manifest (``integ.json``):

1. synthesize ``integ_secure_tunnel.py`` once (``build/integ/cdk.out``); deploy that assembly;
2. the test case's ``preDeploy`` hooks; deploy its stacks;
3. deploy the assertion stack without rollback, its outputs to a file: every ``AssertionResults``
   output must be ``{"status": "success"}``; then the ``postDeploy`` hooks;
4. always (unless ``--keep``): the ``preDestroy`` hooks, ``cdk destroy`` of every stack, the
   ``postDestroy`` hooks (the post-destroy check). Hooks run in ``integ/``, as integ-runner runs them.

Needs AWS credentials and a bootstrapped account and region (``cdk bootstrap``). The region is
``--region`` or boto3's (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
TEST_APP = HERE / "integ_secure_tunnel.py"
BUILD_DIR = REPO_ROOT / "build" / "integ"
CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"
POST_DESTROY_RESULT = BUILD_DIR / "post-destroy-check.json"

Json = dict[str, Any]


class IntegFailure(Exception):
    """A step of the test failed."""


def assertion_failures(outputs: Json, assertion_stack: str) -> tuple[int, list[str]]:
    """(number of assertion results, the failed ones) in a ``cdk deploy --outputs-file`` document."""
    results = {k: v for k, v in outputs.get(assertion_stack, {}).items() if k.startswith("AssertionResults")}
    failed = []
    for name, value in sorted(results.items()):
        try:
            result = json.loads(value)
        except (TypeError, ValueError):
            result = {"status": "fail", "message": f"unreadable result {value!r}"}
        if result.get("status") != "success":
            failed.append(f"{name}: {result.get('message', result)}")
    return len(results), failed


def expected_assertions(assembly: Path, assertion_stack: str) -> int:
    """How many ``AssertionResults`` outputs the assertion stack's template declares."""
    template = json.loads((assembly / f"{assertion_stack}.template.json").read_text())
    return sum(1 for name in template.get("Outputs", {}) if name.startswith("AssertionResults"))


class Runner:
    """Deploy, assert and destroy one synthesized integration test."""

    def __init__(self, region: str, verbose: bool = False) -> None:
        self.region = region
        self.verbose = verbose
        self.env = dict(os.environ, AWS_REGION=region, AWS_DEFAULT_REGION=region)
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), self.env.get("PATH", "")])
        self.env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
        self.env.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
        self.assembly = BUILD_DIR / "cdk.out"

    def run(self, command: list[str], cwd: Path = REPO_ROOT) -> None:
        print(f"$ {shlex.join(command)}", flush=True)
        done = subprocess.run(command, cwd=cwd, env=self.env, check=False)  # noqa: S603
        if done.returncode != 0:
            raise IntegFailure(f"{shlex.join(command)} exited {done.returncode}")

    def cdk(self, *args: str) -> None:
        self.run([str(CDK_CLI), *args, "--no-notices", "--ci"])

    def hooks(self, case: Json, stage: str) -> None:
        for hook in case.get("hooks", {}).get(stage, []):
            self.run(shlex.split(hook), cwd=HERE)

    def synthesize(self) -> Json:
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        app = f"{shlex.quote(sys.executable)} {shlex.quote(str(TEST_APP))}"
        self.cdk("synth", "--app", app, "--output", str(self.assembly), "--quiet")
        manifest: Json = json.loads((self.assembly / "integ.json").read_text())
        return manifest

    def deploy_and_assert(self, case: Json) -> tuple[int, list[str]]:
        app = str(self.assembly)
        self.hooks(case, "preDeploy")
        self.cdk("deploy", "--app", app, "--require-approval", "never", *case["stacks"])
        outputs_file = BUILD_DIR / "assertion-results.json"
        outputs_file.unlink(missing_ok=True)
        stack = case["assertionStackName"]
        # No rollback: a failed assertion leaves the others' results (integ-runner does the same).
        self.cdk(
            "deploy", "--app", app, "--require-approval", "never", "--exclusively", "--no-rollback",
            "--outputs-file", str(outputs_file), stack,
        )  # fmt: skip
        outputs = json.loads(outputs_file.read_text()) if outputs_file.exists() else {}
        self.hooks(case, "postDeploy")
        return assertion_failures(outputs, stack)

    def destroy(self, case: Json) -> None:
        self.hooks(case, "preDestroy")
        stacks = [case["assertionStackName"], *case["stacks"]]
        self.cdk("destroy", "--app", str(self.assembly), "--force", *stacks)
        self.hooks(case, "postDestroy")


def main(argv: list[str] | None = None) -> int:
    """Run the test; exit 0 only if every assertion and the post-destroy check passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--region", help="AWS region (default: boto3's, e.g. AWS_REGION)")
    parser.add_argument("--keep", action="store_true", help="do not destroy the stacks (debugging)")
    args = parser.parse_args(argv)

    session = boto3.session.Session(region_name=args.region)
    region = session.region_name
    if not region:
        print("make integ: no AWS region; set AWS_REGION or pass INTEG_REGION=...", file=sys.stderr)
        return 2
    try:
        account = session.client("sts").get_caller_identity()["Account"]
    except Exception as exc:  # no credentials, expired token, no network: say so and stop
        print(
            f"make integ needs AWS credentials ({type(exc).__name__}); nothing was deployed", file=sys.stderr
        )
        return 2
    print(f"Integration test in account {account}, region {region}", flush=True)

    runner = Runner(region)
    start = time.monotonic()
    failures: list[str] = []
    manifest = runner.synthesize()
    for name, case in manifest["testCases"].items():
        deployed = False
        try:
            count, failed = runner.deploy_and_assert(case)
            deployed = True
            expected = expected_assertions(runner.assembly, case["assertionStackName"])
            if count != expected:
                failed.append(f"{count} of {expected} assertion results were reported")
            failures += [f"{name}: {f}" for f in failed]
        except IntegFailure as exc:
            failures.append(f"{name}: {exc}")
        finally:
            if args.keep:
                print(f"--keep: {name} left deployed; cdk destroy --app build/integ/cdk.out --all --force")
            else:
                try:
                    runner.destroy(case)
                except IntegFailure as exc:
                    failures.append(f"{name}: {exc}")
        if deployed and not failures:
            print(f"{name}: every assertion passed")
    if POST_DESTROY_RESULT.exists():
        print(f"post-destroy check ({POST_DESTROY_RESULT.relative_to(REPO_ROOT)}):")
        print(POST_DESTROY_RESULT.read_text())
    minutes = (time.monotonic() - start) / 60
    if failures:
        print(f"FAILED after {minutes:.1f} min:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"PASSED in {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

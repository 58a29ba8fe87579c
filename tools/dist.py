"""A standalone release of the provider: ``make dist`` (``python -m tools.dist``).

Writes into ``dist/`` what deploys the ``Custom::IoTSecureTunnel`` provider with the AWS CLI alone,
without CDK or ``cdk bootstrap`` (``docs/deploy-without-cdk.md``):

- ``iot-secure-tunnel-provider.template.json``: the standalone provider stack
  (``SecureTunnelProviderStack(standalone=True)``), whose handler code is the object
  ``s3://<CodeBucket>[-<region>]/<CodeKey>``;
- ``secure-tunnel-handler-<asset hash>.zip``: the handler, exactly the files of the Lambda asset
  directory that ``cdk synth`` stages for the CDK provider stack, zipped deterministically (sorted
  entries, fixed timestamp and permissions); the name holds CDK's hash of that content, so each
  release has its own S3 key and CloudFormation updates the code when the key changes;
- ``SHA256SUMS``: the SHA-256 of both, for ``sha256sum -c SHA256SUMS`` in ``dist/``.

Both stacks are synthesized in one app, with cdk.json's context and cdk-nag's AwsSolutions pack;
any unacknowledged finding or warning fails the build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import cx_api
from cdk_nag import AwsSolutionsChecks

from cdk_iot_secure_tunnel.provider_stack import SecureTunnelProviderStack
from tools.handler_zip import write_zip

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "dist"
TEMPLATE_NAME = "iot-secure-tunnel-provider.template.json"
ZIP_PREFIX = "secure-tunnel-handler-"
CHECKSUMS_NAME = "SHA256SUMS"
#: The CDK provider stack: synthesized only for its staged Lambda asset directory.
ASSET_STACK = "IoTSecureTunnelProvider"
#: The standalone provider stack: its template is the release's template.
STANDALONE_STACK = "IoTSecureTunnelProviderStandalone"


@dataclass(frozen=True)
class Release:
    """The files one build wrote."""

    template: Path
    handler_zip: Path
    checksums: Path
    asset_hash: str


@dataclass(frozen=True)
class Synthesized:
    """What the release is made of, in a synthesized cloud assembly."""

    template: Path
    asset_hash: str
    asset_dir: Path


def cdk_context() -> dict[str, Any]:
    """The context of the repository's cdk.json (feature flags), as ``cdk synth`` passes it."""
    context: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    return context


def synthesize(outdir: Path) -> Synthesized:
    """Synthesize the CDK provider stack (for its asset) and the standalone one into ``outdir``."""
    app = cdk.App(outdir=str(outdir), context=cdk_context())
    SecureTunnelProviderStack(app, ASSET_STACK)
    SecureTunnelProviderStack(app, STANDALONE_STACK, standalone=True)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()
    check_findings(outdir, [assembly.get_stack_artifact(s) for s in (ASSET_STACK, STANDALONE_STACK)])
    asset_hash, asset_dir = function_asset(outdir, ASSET_STACK)
    return Synthesized(outdir / f"{STANDALONE_STACK}.template.json", asset_hash, asset_dir)


def check_findings(outdir: Path, stacks: list[cx_api.CloudFormationStackArtifact]) -> None:
    """Fail on any warning or error of the stacks and any unsuppressed cdk-nag finding."""
    serious = (cx_api.SynthesisMessageLevel.WARNING, cx_api.SynthesisMessageLevel.ERROR)
    problems = [f"{m.id}: {m.entry.data}" for s in stacks for m in s.messages if m.level in serious]
    report_path = outdir / "validation-report.json"
    if report_path.exists():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        problems += [v["ruleName"] for p in report["pluginReports"] for v in p.get("violations", [])]
    if problems:
        raise RuntimeError("the provider stacks have unacknowledged findings:\n" + "\n".join(problems))


def function_asset(outdir: Path, stack: str) -> tuple[str, Path]:
    """(hash, staged directory) of the one zip-packaged asset of ``stack``: the handler's code
    (the manifest also lists the template itself, as a file)."""
    manifest = json.loads((outdir / f"{stack}.assets.json").read_text(encoding="utf-8"))
    files = manifest["files"].items()
    ((asset_hash, source),) = [(h, a["source"]) for h, a in files if a["source"]["packaging"] == "zip"]
    return asset_hash, outdir / source["path"]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_checksums(target: Path, files: list[Path]) -> None:
    """``sha256sum`` lines (``<hex>  <name>``, names relative to ``target``'s directory)."""
    lines = [f"{sha256(f)}  {f.relative_to(target.parent).as_posix()}\n" for f in sorted(files)]
    target.write_text("".join(lines), encoding="utf-8")


def remove_previous(output: Path) -> None:
    """Remove the files an earlier build wrote (an old zip has another name)."""
    for path in [*output.glob(f"{ZIP_PREFIX}*.zip"), output / TEMPLATE_NAME, output / CHECKSUMS_NAME]:
        path.unlink(missing_ok=True)


def build(output: Path) -> Release:
    """Synthesize and write the release into ``output`` (created if needed)."""
    with tempfile.TemporaryDirectory(prefix="iot-secure-tunnel-dist-") as scratch:
        synthesized = synthesize(Path(scratch) / "cdk.out")
        output.mkdir(parents=True, exist_ok=True)
        remove_previous(output)
        template = output / TEMPLATE_NAME
        shutil.copyfile(synthesized.template, template)
        handler_zip = output / f"{ZIP_PREFIX}{synthesized.asset_hash}.zip"
        write_zip(synthesized.asset_dir, handler_zip)
    checksums = output / CHECKSUMS_NAME
    write_checksums(checksums, [template, handler_zip])
    return Release(template, handler_zip, checksums, synthesized.asset_hash)


def deploy_hint(release: Release) -> str:
    """The AWS CLI commands that deploy this release (docs/deploy-without-cdk.md)."""
    key = release.handler_zip.name
    return (
        f"aws s3 cp {release.handler_zip} s3://<bucket>/{key}\n"
        f"aws cloudformation deploy --stack-name IoTSecureTunnelProvider --template-file {release.template} "
        f"--capabilities CAPABILITY_IAM --parameter-overrides CodeBucket=<bucket> CodeKey={key}"
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m tools.dist [--output DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m tools.dist", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: dist/ of the repo")
    args = parser.parse_args(argv)
    release = build(args.output)
    for path in (release.template, release.handler_zip, release.checksums):
        print(path)
    print(f"Deploy (docs/deploy-without-cdk.md):\n{deploy_hint(release)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The handler's Lambda asset, bundled locally: no Docker, no network.

The asset holds two top-level packages, found where Python finds them (a source checkout with an
editable install, or an installed wheel):

- ``secure_tunnel_handler`` — the handler itself;
- ``crhelper`` — its one dependency that the Lambda runtime lacks, with its licence files.

boto3 and botocore are not bundled: the Python runtimes of Lambda provide them.

The copy is deterministic (sorted walk, no ``__pycache__``/``*.pyc``, nothing from the
environment), and the asset hash is computed from the bundled output, so every synth of the
same code gives the same hash.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

#: Python package of the handler (``lambda/secure_tunnel_handler`` in the repository).
HANDLER_PACKAGE = "secure_tunnel_handler"
#: Lambda handler string.
HANDLER = f"{HANDLER_PACKAGE}.entrypoint.handler"
#: Distribution and package of the one bundled dependency.
BUNDLED_DEPENDENCY = "crhelper"
#: Files of a distribution's metadata that are copied with it (no RECORD or INSTALLER: they
#: depend on how it was installed, and would make the asset hash depend on the machine).
_METADATA_FILES = ("METADATA", "LICENSE", "NOTICE", "top_level.txt")
_IGNORED_DIRS = frozenset({"__pycache__"})
_IGNORED_SUFFIXES = (".pyc", ".pyo")


def package_dir(package: str) -> Path:
    """Directory of an importable top-level package, without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise RuntimeError(
            f"Python package {package!r} is not installed: install cdk-iot-secure-tunnel "
            f"(pip install cdk-iot-secure-tunnel, or pip install -e . in its repository)"
        )
    return Path(locations[0]).resolve()


def copy_package(source: Path, destination: Path) -> list[Path]:
    """Copy a package tree in a fixed order, leaving out byte code; return the files written."""
    written: list[Path] = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if _IGNORED_DIRS.intersection(relative.parts) or path.suffix in _IGNORED_SUFFIXES:
            continue
        target = destination / relative
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
            written.append(target)
    return written


def _copy_distribution_metadata(distribution: str, output: Path) -> None:
    dist = importlib.metadata.distribution(distribution)
    target = output / f"{distribution}-{dist.version}.dist-info"
    for name in _METADATA_FILES:
        text = dist.read_text(name)
        if text is not None:
            target.mkdir(parents=True, exist_ok=True)
            (target / name).write_text(text, encoding="utf-8")


def bundle_handler(output_dir: str | Path) -> None:
    """Write the handler package and crhelper into ``output_dir`` (which must be empty)."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    handler_files = copy_package(package_dir(HANDLER_PACKAGE), output / HANDLER_PACKAGE)
    if not any(p.name == "entrypoint.py" for p in handler_files):
        raise RuntimeError(f"{HANDLER_PACKAGE}/entrypoint.py is missing: Lambda's handler {HANDLER} needs it")
    copy_package(package_dir(BUNDLED_DEPENDENCY), output / BUNDLED_DEPENDENCY)
    _copy_distribution_metadata(BUNDLED_DEPENDENCY, output)


@jsii.implements(ILocalBundling)
class LocalHandlerBundling:
    """:class:`aws_cdk.ILocalBundling` that copies the handler and crhelper into the asset.

    It always succeeds locally, so CDK never falls back to Docker bundling.
    """

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        """Bundle into ``output_dir``; return True (bundling was done locally)."""
        bundle_handler(output_dir)
        return True


def handler_code() -> lambda_.Code:
    """The handler's Lambda code: a local-bundled asset whose hash is that of its content.

    The asset's source is the handler package directory; its hash is computed from the bundled
    output (``AssetHashType.OUTPUT``), so a change of the handler or of crhelper changes it, and
    nothing else does.
    """
    return lambda_.Code.from_asset(
        str(package_dir(HANDLER_PACKAGE)),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Never pulled or run: local bundling always succeeds. CDK requires an image.
            image=DockerImage.from_registry("local-bundling-only"),
            local=LocalHandlerBundling(),
        ),
    )

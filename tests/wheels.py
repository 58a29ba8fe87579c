"""Building a distribution's wheel as a user's pip would (``pip wheel``), for tests of its content."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path


def build_wheel(source: Path, out: Path, name_pattern: str) -> zipfile.ZipFile:
    """``pip wheel --no-deps`` of ``source`` into ``out``; the one wheel whose name matches."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob(name_pattern)
    return zipfile.ZipFile(built)

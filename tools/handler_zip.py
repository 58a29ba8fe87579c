"""The handler's deployment package: a reproducible zip of the staged asset directory (standard
library only, so that ``bench/`` measures the package without starting the CDK).

``make dist`` releases it; ``make bench`` reports its size.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

#: Every entry's timestamp (the earliest a zip can hold) and permissions (rw-r--r--, which Lambda
#: needs: read for all users).
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644
ZIP_UNIX = 3
ZIP_LEVEL = 9


def asset_files(directory: Path) -> list[str]:
    """Every file under ``directory``, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def write_zip(directory: Path, target: Path) -> None:
    """Zip the files of ``directory`` into ``target``: the same bytes from the same files."""
    with zipfile.ZipFile(target, "w") as archive:
        for name in asset_files(directory):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.create_system = ZIP_UNIX
            info.external_attr = ZIP_FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (directory / name).read_bytes(), compresslevel=ZIP_LEVEL)

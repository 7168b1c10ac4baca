"""Install the pinned assistant CLIs from the npm registry into a cache outside the repository.

``make assistants`` runs this; the ``assistants`` test group reads the same
pins (``pins.txt``) and the same directory (``$SYNAPSE_ASSISTANTS_DIR``,
default ``~/.cache/synapse-channel/assistants``). Each pin lives in its own
folder (``<name>-<version>``), so bumping a pin installs beside the old one
and the tests then run against the new release. ``SYNAPSE_ASSISTANTS_PIN=latest``
installs and tests each CLI's current release instead (a canary, not CI's default).
Stdlib only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PINS = Path(__file__).with_name("pins.txt")


@dataclass(frozen=True, slots=True)
class Pin:
    name: str
    package: str
    version: str
    binary: str

    @property
    def folder(self) -> Path:
        return cache_dir() / f"{self.name}-{self.version}"

    @property
    def path(self) -> Path:
        """The CLI's launcher once installed."""
        return self.folder / "node_modules" / ".bin" / self.binary


def cache_dir() -> Path:
    found = os.environ.get("SYNAPSE_ASSISTANTS_DIR")
    if found:
        return Path(found)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "synapse-channel" / "assistants"


def pins() -> dict[str, Pin]:
    """The pinned CLIs by name (``SYNAPSE_ASSISTANTS_PIN=latest`` overrides every version)."""
    override = os.environ.get("SYNAPSE_ASSISTANTS_PIN")
    out = {}
    for line in PINS.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, package, version, binary = line.split()
            out[name] = Pin(name, package, override or version, binary)
    return out


def install(pin: Pin) -> None:
    """npm-install ``pin`` into its cache folder; an exact version once, a dist-tag (``latest``) on every run."""
    exact = re.fullmatch(r"\d+\.\d+\.\d+(?:[-+][\w.]+)?", pin.version) is not None
    if exact and pin.path.exists():
        print(f"{pin.name} {pin.version}: cached in {pin.folder}")
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is not installed (Debian: apt-get install nodejs npm); the assistants tests need it")
    pin.folder.mkdir(parents=True, exist_ok=True)
    print(f"{pin.name} {pin.version}: installing {pin.package} into {pin.folder}", flush=True)
    done = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
            str(pin.folder),
            f"{pin.package}@{pin.version}",
        ],
        check=False,
    )
    if done.returncode != 0 or not pin.path.exists():
        shutil.rmtree(pin.folder, ignore_errors=True)
        sys.exit(f"{pin.name}: npm install {pin.package}@{pin.version} failed")


def main() -> None:
    for pin in pins().values():
        install(pin)


if __name__ == "__main__":
    main()

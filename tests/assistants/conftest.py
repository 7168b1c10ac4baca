"""The ``assistants`` group: the real assistant CLIs, pinned in ``pins.txt``.

Every test here is marked ``assistants`` (kept out of the default run, run
in CI by ``make test-assistants``). A CLI that is not installed skips locally
and fails under ``CI=true`` (``make assistants`` installs them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ..conftest import needs
from .install import Pin, cache_dir, pins

HERE = Path(__file__).parent

# Resolved now, at collection: the autouse fixture gives each test its own $HOME, and the
# cache (default ~/.cache/...) must still be the one `make assistants` filled.
os.environ.setdefault("SYNAPSE_ASSISTANTS_DIR", str(cache_dir()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.assistants)


def installed(name: str) -> Pin:
    """The pinned CLI ``name``, installed and answering with its pinned version (else skip/fail)."""
    pin = pins()[name]
    needs(pin.path.exists(), f"{pin.package}@{pin.version} (make assistants)")
    out = subprocess.run([str(pin.path), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert pin.version in out.stdout or pin.version == "latest", f"{pin.path} says {out.stdout!r}, pinned {pin.version}"
    return pin

"""docs/benchmarks.md is generated from the committed JSON and must agree with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmarks_doc_matches_results() -> None:
    """`benchmarks/report.py --check` passes: the docs show exactly the measured figures."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr

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


def test_scale_compaction_and_brick_results_are_rendered_with_loop_lag() -> None:
    """Each committed scale*/compaction/brick result has its section, and every measure row shows loop lag."""
    results = ROOT / "benchmarks" / "results"
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    expected = {
        "## Fleet scale": any(results.glob("scale*.json")),
        "## Journal compaction": (results / "compaction.json").exists(),
        "## The brick attempt": (results / "brick.json").exists(),
    }
    for heading, present in expected.items():
        assert (heading in doc) == present, heading
        if not present:
            continue
        section = doc.split(heading, 1)[1].split("\n## ", 1)[0]
        tables = [t for t in section.split("\n\n") if "loop lag max | loop lag p99" in t]
        assert tables, f"{heading}: no table with loop lag columns"
        for table in tables:
            header, _, *rows = table.strip().splitlines()
            lag = header.split(" | ").index("loop lag max")
            assert rows
            for row in rows:
                cells = [c.strip() for c in row.strip("|").split(" | ")]
                assert cells[lag] and cells[lag + 1], row  # a figure, or "not measured": never blank

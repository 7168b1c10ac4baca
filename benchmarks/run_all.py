"""Run every benchmark, then regenerate docs/benchmarks.md from the JSON results.

make bench        (or: python benchmarks/run_all.py [--quick])
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ["cli_latency.py", "durability.py", "claims.py", "guard.py", "fanout.py", "mcp_tools.py"]


def main() -> None:
    quick = ["--quick"] if "--quick" in sys.argv else []
    for script in SCRIPTS:
        args = [sys.executable, str(HERE / script)]
        if script in ("durability.py", "fanout.py"):
            args += quick
        print(f"== {script}", flush=True)
        subprocess.run(args, check=True)
    subprocess.run([sys.executable, str(HERE / "report.py")], check=True)


if __name__ == "__main__":
    main()

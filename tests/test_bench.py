"""The benchmarks keep running: ``python -m bench --quick`` gives a full, finite table.

Timings are never asserted (machines are noisy); this only checks that every
benchmark module still runs against the current code and reports its rows.
"""

import json
import math
import subprocess
import sys

from conftest import ROOT


def test_every_benchmark_runs_in_quick_mode(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    topics = sorted(p.stem[len("bench_") :] for p in (ROOT / "bench").glob("bench_*.py"))
    assert sorted({row["bench"] for row in rows}) == topics
    assert [row["note"] for row in rows if row["name"] == "ERROR"] == []
    for row in rows:
        assert math.isfinite(row["value"]) and row["value"] > 0, row
        if row["baseline"] is not None:
            assert (
                math.isclose(row["ratio"], row["value"] / row["baseline"], rel_tol=1e-9)
                or "ratio" in row["note"]
            ), row

"""`make bench` runs to its end: each bench module, at a tiny size, writes its report.

Nothing here judges a figure (timings belong in `make bench`, not in tests): what is
checked is that every module still runs against the code it measures and reports its
figures beside their floors. A module left behind by a change to the code it drives
(a helper renamed, a table moved) fails here, not halfway through a long bench run.
Slow: `make bench-smoke`, which CI runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

# module -> (tiny arguments, keys its report must hold)
RUNS = {
    "run": (["--members", "2000", "--scans", "50", "--posts", "100", "--idle-s", "1", "--no-slips"],
            {"start", "idle", "scan_to_member_identified", "post_transaction", "floors", "ratios", "targets"}),
    "slips": (["--rounds", "2"], {"wire", "targets"}),  # bench.run's slip part (`make bench` runs it there)
    "camera": (["--clips", "3", "--frames", "2"], {"sets", "empty_frames", "targets"}),
    "sync": (["--events", "500", "--members", "5000"], {"outage_drain", "snapshot", "targets"}),
    "central": (["--lanes", "2", "--workers", "1", "--batches", "2", "--events", "20"],
                {"central", "floor_bare_insert", "ratio_to_floor"}),
    "burn": (["--redemptions", "10"], {"redemption_online", "redemption_offline", "added_by_online_ms"}),
    "observe": (["--calls", "200", "--posts", "20"], {"log_line", "sale", "per_sale"}),
    "rules": (["--members", "1000", "--sales", "50", "--rounds", "1"], {"parts", "rounds"}),
}


def bench(module: str, out: Path, args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", f"bench.{module}", "--out", str(out), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"bench.{module} exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("module", list(RUNS))
def test_each_bench_module_runs_to_its_report(tmp_path, module):
    args, keys = RUNS[module]
    report = bench(module, tmp_path / f"{module}.json", args)
    assert keys <= report.keys(), f"bench.{module} report lacks {sorted(keys - report.keys())}"
    if module == "rules":  # each part beside its floor, the sale beside the commit it cannot do without
        parts = report["parts"]
        assert {"lookup", "evaluate", "request", "sale"} <= parts.keys()
        assert all(parts[name]["floor_us"] > 0 for name in ("lookup", "request", "sale"))


def test_the_fleet_bench_reads_the_central_report(tmp_path):
    args, _ = RUNS["central"]
    bench("central", tmp_path / "central.json", args)
    done = subprocess.run([sys.executable, "-m", "bench.fleet", "--lanes", "200", "--out", str(tmp_path / "fleet.json"),
                           "--central-report", str(tmp_path / "central.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "fleet.json").read_text())
    assert {"capacity_events_s", "capacity_from", "runs"} <= report.keys() and report["runs"]
    assert "Traceback" not in done.stderr

"""Where a sale's CPU goes, thread by thread, without a profiler in the way.

    python -m bench.threads [--posts 2000] [--members 100000] [--rounds 3] [--printer] [--strace] [--out FILE]

Starts the reference central and the daemon as `make bench` does (the daemon
through a thin wrapper that writes each thread's name and native id to a file
as it starts), posts sales sequentially, then from two POS processes, each phase until
its sales are pushed to central, and reads every thread's CPU clock and
context switches from /proc/PID/task/TID (the kernel's own counters: nothing
added to the daemon's hot path). Per sale: CPU ms of each thread, and its
voluntary switches (the thread slept: a wake-up) and involuntary ones (the
scheduler took the core away). With --strace, one extra round under
`strace -c -f` counts the system calls per sale (strace slows the daemon:
read the counts, not the times).

With --printer the lane has a network receipt printer (the tests' ESC/POS
emulator on 127.0.0.1, tcp://): every sale names a member, so every sale
queues a slip, and a phase ends only once its slips are printed too, so the
print worker's CPU and the writer's commits for the slips are counted. Each
phase reports the ledger's commits and units per sale (GET /metrics), and the
run reports its floor, measured in the same run: the CPU of one durable
commit of a print job's row (WAL, synchronous=FULL), so the writer's CPU per
sale reads beside commits per sale x that floor.

As a module with ``--named FILE run ...`` arguments it is the daemon itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def named_daemon(names: str, argv: list[str]) -> int:
    """`posd run`, writing "native_id name" for every thread as it starts (and the main thread), and
    at exit what the cyclic garbage collector cost: collections and seconds per generation."""
    import gc

    out = open(names, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    lock = threading.Lock()
    collected: dict[int, list[Any]] = {g: [0, 0.0, []] for g in range(3)}
    started: list[float] = []

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            acc = collected[info["generation"]]
            took = time.perf_counter() - started.pop()
            acc[0] += 1
            acc[1] += took
            if info["generation"] == 2:
                acc[2].append(round(1000 * took, 2))

    gc.callbacks.append(timed)

    def note(*_: object) -> None:
        sys.setprofile(None)
        current = threading.current_thread()
        with lock:
            out.write(f"{threading.get_native_id()} {current.name}\n")

    threading.setprofile(note)
    note()
    from posd.cli import main

    try:
        return main(argv)
    finally:
        Path(names + ".gc").write_text(json.dumps(collected))


def task_counters(pid: int) -> dict[int, tuple[float, int, int]]:
    """tid -> (CPU seconds, voluntary switches, involuntary switches), for every live thread of pid."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            # schedstat: ns on CPU, ns waiting for a CPU, timeslices; finer than stat's ticks
            on_cpu = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                on_cpu = (int(fields[11]) + int(fields[12])) / ticks
            except OSError:
                continue
        try:
            status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        found[int(task.name)] = (on_cpu, int(status["voluntary_ctxt_switches"]),
                                 int(status["nonvoluntary_ctxt_switches"]))
    return found


def delta(before: dict[int, tuple[float, int, int]], after: dict[int, tuple[float, int, int]],
          names: dict[int, str]) -> dict[str, list[float]]:
    """Per thread name (threads of a pool summed): [CPU s, voluntary, involuntary] spent in between."""
    out: dict[str, list[float]] = {}
    for tid, (cpu, vol, invol) in after.items():
        cpu0, vol0, invol0 = before.get(tid, (0.0, 0, 0))
        name = names.get(tid, f"tid {tid}")
        name = name.rstrip("0123456789_") or name  # a pool's threads under one name
        acc = out.setdefault(name, [0.0, 0, 0])
        acc[0] += cpu - cpu0
        acc[1] += vol - vol0
        acc[2] += invol - invol0
    return out


def read_names(path: Path) -> dict[int, str]:
    names = {}
    if path.exists():
        for line in path.read_text().splitlines():
            tid, _, name = line.partition(" ")
            names[int(tid)] = name
    return names


def strace_round(pid: int, post: Any, sales: int) -> dict[str, float]:
    """System calls per sale over one round, every thread of the daemon (strace -c -f)."""
    with tempfile.NamedTemporaryFile(suffix=".strace") as f:
        proc = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", f.name, "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread
        try:
            post()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        counts: dict[str, float] = {}
        for line in Path(f.name).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and not parts[-1].startswith("total"):
                try:
                    counts[parts[-1]] = round(int(parts[3]) / sales, 2)
                except ValueError:
                    continue
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    from bench.common import BenchLane, ROOT, bench_config, central_process, concurrent_posts, free_port, post_loop
    from bench.common import emit, proc_cpu_s
    from bench.floors import sale_row_sizes as sale_row_sizes_of
    from bench.run import fill_cache, sale_members, seed_with_buyers
    from tests.support.printer_emulator import PrinterEmulator
    from tests.support.wait import wait_until

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=2000, help="sales per round (half sequential, half from 2 POS)")
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--printer", action="store_true", help="a TCP receipt printer: every sale prints a slip")
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    seed = json.loads((ROOT / "config" / "demo-seed.json").read_text())
    report: dict[str, Any] = {"printer": args.printer, "rounds": []}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        buying = [(1, 200), (99, args.posts // 2), *((10 * r + 2, args.posts // 2) for r in range(args.rounds))]
        central = stack.enter_context(central_process(Path(tmp), seed_with_buyers(seed, args.members, *buying)))
        emulator = stack.enter_context(PrinterEmulator(idle_timeout=3.0)) if args.printer else None
        work = Path(tmp) / "lane"
        fill_cache(work / "state", args.members)
        port = free_port()
        names_file = Path(tmp) / "threads.txt"
        cfg = bench_config(work, central_url=central.url, secret=seed["stores"]["S001"]["secret"], port=port,
                           printer=f"{emulator.url}?timeout=5" if emulator else "none")
        lane = BenchLane(cfg, port, module=("bench.threads", "--named", str(names_file)))
        lane.start()
        lane.wait_synced(timeout=120)
        pid = lane.proc.pid
        half = args.posts // 2
        sold = 0

        def settled() -> None:
            """Every sale so far pushed to central and, with a printer, its slip printed."""
            lane.wait_drained(timeout=300)
            if emulator is not None:
                # polled gently: each look costs the daemon a /metrics answer, counted in the phase
                wait_until(lambda: lane_counters(lane)["printed"] >= sold, 300, "slips printed", interval=0.2)

        try:
            post_loop(lane.port, lane.token, "warm", sale_members(args.members, 1, 200), 200)
            sold += 200
            settled()
            # a print job's row as the warm-up's sales wrote it (a bare lane queues none: a token row)
            job_bytes = sale_row_sizes_of(lane.state / "ledger.db", "warm").get("print_jobs", [300])[0]
            for r in range(args.rounds):
                bodies = sale_members(args.members, 10 * r + 2, half)
                phases = {"sequential": lambda: post_loop(lane.port, lane.token, f"seq{r}", bodies, half),
                          "two_pos": lambda: concurrent_posts(lane.port, lane.token, f"par{r}", bodies, half, 2)}
                row: dict[str, Any] = {}
                total_cpu = 0.0
                for phase, post in phases.items():
                    ledger0 = lane_counters(lane)
                    before, cpu0 = task_counters(pid), proc_cpu_s(pid)
                    post()
                    sold += half
                    settled()
                    after, cpu = task_counters(pid), proc_cpu_s(pid) - cpu0
                    ledger1 = lane_counters(lane)
                    total_cpu += cpu
                    threads = delta(before, after, read_names(names_file))
                    row[phase] = {
                        "cpu_ms_per_sale": round(1000 * cpu / half, 3),
                        "per_sale": {k: round((ledger1[k] - ledger0[k]) / half, 3) for k in ledger1},
                        "threads": {n: {"cpu_ms": round(1000 * c / half, 3), "wakeups": round(v / half, 2),
                                        "preempted": round(i / half, 2)}
                                    for n, (c, v, i) in sorted(threads.items(), key=lambda kv: -kv[1][0])
                                    if c > 0 or v > 0}}
                report["rounds"].append({"cpu_ms_per_sale": round(1000 * total_cpu / (2 * half), 3)} | row)
            if args.strace:
                bodies = sale_members(args.members, 99, half)

                def post() -> None:
                    nonlocal sold
                    post_loop(lane.port, lane.token, "strace", bodies, half)
                    sold += half
                    settled()

                report["syscalls_per_sale"] = strace_round(pid, post, half)
        finally:
            lane.stop()
        gc_file = Path(str(names_file) + ".gc")
        if gc_file.exists():  # over the whole run: warm-up, rounds and the strace round
            sales = 200 + args.rounds * 2 * half + (half if args.strace else 0)
            report["gc_per_sale"] = {f"gen{g}": {"collections": round(n / sales, 3), "ms": round(1000 * t / sales, 4),
                                                 "ms_each": round(1000 * t / max(1, n), 3)}
                                     for g, (n, t, _) in json.loads(gc_file.read_text()).items()}
            report["gc_full_collections_ms"] = json.loads(gc_file.read_text())["2"][2]  # from start-up on
        report["floor"] = commit_floor(Path(tmp) / "floor-commits.db", 2000, job_bytes)
    return emit(report, args.out)


def lane_counters(lane: Any) -> dict[str, float]:
    """The ledger's commits and units and the slips printed so far, from the daemon's /metrics."""
    wanted = {"posd_ledger_commits_total": "commits", "posd_ledger_units_total": "units",
              'posd_print_jobs_total{outcome="printed"}': "printed"}
    found = dict.fromkeys(wanted.values(), 0.0)
    for line in lane.get("/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            found[wanted[name]] = float(value)
    return found


def commit_floor(db: Path, n: int, row_bytes: int) -> dict[str, Any]:
    """CPU of one durable commit of a row of a print job's size (WAL, FULL), in a child process, in
    this run: what each of the writer's commits for a slip costs at least."""
    from bench.floors import durable_commits

    done = durable_commits(db, n, {"print_jobs": [row_bytes]})
    return {"row_bytes": row_bytes, "durable_commit_cpu_ms": round(1000 * done["cpu_s"] / n, 4),
            "durable_commit_p50_ms": round(sorted(done["ms"])[n // 2], 4)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--named"]:
        os.environ.setdefault("POSD_LOG_LEVEL", "warning")
        raise SystemExit(named_daemon(sys.argv[2], sys.argv[3:]))
    raise SystemExit(main())

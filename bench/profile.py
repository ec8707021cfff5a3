"""Where a sale's time goes: the daemon under cProfile (every thread) with the bench's POS load.

    python -m bench.profile [--posts 3000] [--out bench/profile.pstats] [--top 40]

Starts the reference central and the daemon as `make bench` does, posts
sales sequentially and from two POS processes, stops the daemon, and prints
its functions by own time and by cumulative time, every thread merged
(the event loop, the ledger writer, the relay, the puller). Times are each
thread's CPU clock (time.thread_time): a thread waiting for the GIL, a lock or
the disk counts nothing, so the parts add up to the CPU a sale costs, not to
wall time. The daemon's CPU per sale is printed beside it: profiling slows
everything down, so read the shares, not the absolute times.

As a module with ``run`` arguments it is the profiled daemon itself.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path


def profiled_daemon(out: str, argv: list[str]) -> int:
    """`posd run` with a profiler on every thread; the merged stats go to ``out`` when it stops."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_thread_profile(*_: object) -> None:
        sys.setprofile(None)
        prof = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(prof)
        prof.enable()

    threading.setprofile(start_thread_profile)
    main_prof = cProfile.Profile(time.thread_time)
    profiles.append(main_prof)
    from posd.cli import main

    main_prof.enable()
    try:
        return main(argv)
    finally:
        main_prof.disable()
        with lock:
            stats = pstats.Stats(profiles[0])
            for prof in profiles[1:]:
                try:
                    stats.add(prof)
                except TypeError:  # a thread that never ran a Python call
                    pass
        stats.dump_stats(out)


def main(argv: list[str] | None = None) -> int:
    from bench.common import BenchLane, ROOT, bench_config, central_process, concurrent_posts, free_port, post_loop
    from bench.common import proc_cpu_s
    from bench.run import fill_cache, sale_members, seed_with_buyers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=3000)
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--out", default="bench/profile.pstats")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args(argv)
    seed = json.loads((ROOT / "config" / "demo-seed.json").read_text())
    out = str(Path(args.out).resolve())
    buyers = seed_with_buyers(seed, args.members, (1, 100), (2, args.posts), (3, args.posts))
    with tempfile.TemporaryDirectory() as tmp, central_process(Path(tmp), buyers) as central:
        work = Path(tmp) / "lane"
        fill_cache(work / "state", args.members)
        port = free_port()
        cfg = bench_config(work, central_url=central.url, secret=seed["stores"]["S001"]["secret"], port=port)
        lane = BenchLane(cfg, port, module=("bench.profile", "--profiled", out))
        lane.start()
        lane.wait_synced(timeout=120)
        try:
            post_loop(lane.port, lane.token, "warm", sale_members(args.members, 1, 100), 100)
            cpu0 = proc_cpu_s(lane.proc.pid)
            seq = post_loop(lane.port, lane.token, "seq", sale_members(args.members, 2, args.posts), args.posts)
            par, _ = concurrent_posts(lane.port, lane.token, "par", sale_members(args.members, 3, args.posts),
                                      args.posts, 2)
            lane.wait_drained(timeout=300)
            cpu = proc_cpu_s(lane.proc.pid) - cpu0
        finally:
            lane.stop()
    sales = len(seq) + len(par)
    print(f"{sales} sales; daemon CPU under the profiler {1000 * cpu / sales:.3f} ms per sale")
    stats = pstats.Stats(out)
    print("\nOwn time per sale by part (waits left out; profiled, so read the shares):")
    for part, seconds in breakdown(stats):
        print(f"  {1000 * seconds / sales:7.3f} ms  {part}")
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


# Waiting, not working: a thread blocked on a lock, a queue, a poll or a sleep.
WAITS = ("acquire' of '_thread.lock", "get' of '_queue.SimpleQueue", "select.select", "poll' of 'select",
         "epoll", "time.sleep", "posix.waitpid")
WRITER = ("_run_alone", "_run_group", "_run_write")  # the ledger writer's BEGIN/COMMIT: the sync


def breakdown(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own time by part: the ledger's BEGIN/COMMIT (the sync), other SQL by module, each library,
    each posd package, the standard library by module."""
    parts: dict[str, float] = {}

    def add(part: str, seconds: float) -> None:
        parts[part] = parts.get(part, 0.0) + seconds

    for (path, _, name), (_, _, own, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        label = f"{path}:{name}"
        if any(w in label for w in WAITS):
            continue
        if "sqlite3" in label:
            for (cpath, _, cname), call in callers.items():
                add("SQLite BEGIN/COMMIT (the sync)" if cname in WRITER else
                    f"SQLite statements in {Path(cpath).name}", call[2])
        elif "site-packages/" in path:
            add(f"library {path.split('site-packages/')[1].split('/')[0]}", own)
        elif "/posd/" in path or "/sync/" in path or "/drivers/" in path:
            tail = path.replace("\\", "/").split("/")
            add(f"posd {'/'.join(tail[-2:-1])}", own)
        elif "python3." in path:
            add(f"stdlib {path.split('/lib/python3.')[1].split('/', 1)[1].split('/')[0].removesuffix('.py')}", own)
        else:
            add(f"builtin {name[:50]}", own)
    return sorted(parts.items(), key=lambda kv: -kv[1])[:30]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--profiled"]:
        os.environ.setdefault("POSD_LOG_LEVEL", "warning")
        raise SystemExit(profiled_daemon(sys.argv[2], sys.argv[3:]))
    raise SystemExit(main())

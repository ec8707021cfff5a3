"""The conftest's two guards catch what they are for: a test file that plants a blocking call
on the event loop, and one that leaves a thread running, fail, naming the call and the thread;
the same code done right passes. Run as a separate pytest with this project's conftest."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import loop_guard
from tests.support.lane import LaneProcess

ROOT = Path(__file__).resolve().parent.parent

PLANTED = '''
import asyncio
import threading
import time


def test_sleeps_on_the_loop():
    async def handler():
        time.sleep(0.01)  # a blocking call in async code

    asyncio.run(handler())


def test_waits_on_a_worker_thread_from_the_loop():
    from concurrent.futures import ThreadPoolExecutor

    async def handler():
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(time.sleep, 0.05).result()  # waits on the loop for another thread

    asyncio.run(handler())


def test_leaves_a_thread_running():
    never = threading.Event()
    threading.Thread(target=never.wait, args=(60,), name="forgotten-worker", daemon=True).start()


def test_done_right():
    async def handler():
        await asyncio.sleep(0.01)
        await asyncio.to_thread(time.sleep, 0.01)  # the blocking part off the loop

    asyncio.run(handler())
    worker = threading.Thread(target=time.sleep, args=(0.01,), name="joined-worker")
    worker.start()
    worker.join(10)
'''


@pytest.mark.long  # runs a planted test session, about 8 s: CI runs it with the fault runs (make test-faults)
def test_planted_blocking_calls_and_leaked_threads_fail_their_tests(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_planted=PLANTED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", timeout=300)
    result.assert_outcomes(passed=4, errors=3)
    out = result.stdout.str()
    assert "ERROR at teardown of test_sleeps_on_the_loop" in out
    planted = PLANTED.strip().splitlines()
    sleep_line = 1 + planted.index("        time.sleep(0.01)  # a blocking call in async code")
    wait_line = 1 + next(i for i, text in enumerate(planted) if "waits on the loop for another thread" in text)
    assert f"time.sleep on the event loop's thread, called from test_planted.py:{sleep_line} (handler)" in out
    assert f"Condition.wait on the event loop's thread, called from test_planted.py:{wait_line} (handler)" in out
    assert "threads left running after the test: forgotten-worker" in out
    assert "PASSED test_planted.py::test_done_right" in out
    assert "ERROR at teardown of test_done_right" not in out


def test_a_daemons_loop_guard_lines_reach_the_test(tmp_path):
    """What a daemon started through LaneProcess reports on stderr is read back from its log."""
    program = tmp_path / "blocking_daemon.py"
    program.write_text("import asyncio, sys, time\n"
                       "from tests.support import loop_guard\n"
                       "loop_guard.install(report=sys.stderr)\n"
                       "async def main():\n"
                       "    time.sleep(0.01)\n"
                       "asyncio.run(main())\n")
    log = tmp_path / "posd.log"
    with open(log, "wb") as out:
        subprocess.run([sys.executable, str(program)], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, timeout=60)
    lane = LaneProcess(tmp_path / "posd.toml", 0)
    found = lane.loop_guard_violations()
    assert len(found) == 1
    assert found[0].startswith(f"{loop_guard.MARKER} time.sleep on the event loop's thread, "
                               "called from blocking_daemon.py:5 (main)")
    assert lane.loop_guard_violations() == []  # each line is reported once


def test_sqlite_reads_and_thread_starts_on_the_loop_are_not_blocking_calls():
    """The guard flags waits, not what posd does on the loop by design."""
    import sqlite3
    import threading

    async def handler():
        conn = sqlite3.connect(":memory:")
        conn.execute("SELECT 1").fetchone()
        conn.close()
        worker = threading.Thread(target=lambda: None)
        worker.start()
        await asyncio.to_thread(worker.join, 10)
        time.sleep(0)  # not a wait

    asyncio.run(handler())
    assert loop_guard.take() == []

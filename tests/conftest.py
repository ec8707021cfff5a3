"""Fixtures shared by the test files, and two guards that run for every test.

The guards, as python-zeroconf's tests/conftest.py has them:

- ``no_thread_left_running``: a thread started during a test and still alive
  after it (and after a short bounded grace for threads that are finishing)
  fails the test, naming it: a worker nobody stops is a lane that does not
  shut down cleanly.
- ``no_blocking_call_on_the_loop``: a blocking call (sleep, a wait on another
  thread, a blocking socket, a child process) made on a running asyncio event
  loop fails the test, naming the call and where it was made; in this process
  and in every daemon the tests start (tests.support.loop_guard).

The shared fixtures: the reference central (``central``, its seed
``central_seed`` that a module may override, its database ``central_db``,
``client``), a throwaway PostgreSQL cluster for the session
(``postgres_cluster``) and fresh databases on either engine
(``make_central_db``), lanes in child processes (``start_lane``), a TCP printer
(``printer``), and pty helpers (``pty_pair``).

A module whose tests must hold on both of central's engines sets
``CENTRAL_ENGINES = ENGINES`` (tests/test_central.py does).
"""

from __future__ import annotations

import os
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from posd.sync.central.server import CentralServer
from posd.sync.lane.client import CentralClient
from tests.support import loop_guard
from tests.support.central_fixture import FakeClock, default_seed, make_client, running_central
from tests.support.lane import LaneProcess, launch_lane
from tests.support.postgres import PostgresCluster
from tests.support.printer_emulator import PrinterEmulator

ENGINES = ("sqlite", "postgresql")  # central's two store engines

pytest_plugins = ["pytester"]  # tests/test_guards.py runs planted test files with this conftest

THREAD_GRACE_S = 5.0  # a thread that is finishing gets this long; none is waited on longer

loop_guard.install()


# --- the guards -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_thread_left_running() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    started = [t for t in threading.enumerate() if t not in before]
    deadline = time.monotonic() + THREAD_GRACE_S
    for thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
    leaked = sorted(t.name for t in started if t.is_alive())
    if leaked:
        pytest.fail(f"threads left running after the test: {', '.join(leaked)}", pytrace=False)


@pytest.fixture(autouse=True)
def no_blocking_call_on_the_loop() -> Iterator[None]:
    loop_guard.take()  # anything from before this test is not this test's
    yield
    found = loop_guard.take()
    for lane in list(LaneProcess.running):  # lanes of a longer-lived fixture; the others checked when stopped
        found += lane.loop_guard_violations()
    if found:
        pytest.fail("blocking calls on the event loop:\n" + "\n".join(found), pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """What a lane of a module- or session-scoped fixture did on its loop while stopping."""
    found = loop_guard.take()
    if found:
        print("\nblocking calls on the event loop after the last test that could own them:\n" + "\n".join(found))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- the reference central ------------------------------------------------------------------------


@pytest.fixture
def central_seed() -> dict[str, Any]:
    """The seed of the ``central`` fixture; a module overrides this to seed another one."""
    return default_seed()


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster from Debian's binaries (tests.support.postgres), started once
    per session on a free 127.0.0.1 port; removed at the end."""
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def make_central_db(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str | Path]:
    """make_central_db("sqlite" | "postgresql"): a fresh, empty central database on that engine
    (a file in tmp_path, or a database of the session's cluster dropped after the test)."""
    made = 0

    def make(engine: str) -> str | Path:
        nonlocal made
        made += 1
        if engine == "sqlite":
            folder = tmp_path / f"central-db-{made}"
            folder.mkdir(parents=True, exist_ok=True)
            return folder / "central.db"
        if engine != "postgresql":
            raise ValueError(engine)
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        name = f"t_{os.getpid()}_{threading.get_ident() % 10**6}_{time.monotonic_ns()}"
        dsn = cluster.create_database(name, template=True)
        request.addfinalizer(lambda: cluster.drop_database(name))
        return dsn

    return make


@pytest.fixture
def central_db(request: pytest.FixtureRequest, make_central_db: Callable[[str], str | Path]) -> str | Path:
    """The ``central`` fixture's database: SQLite, the embedded default, or each engine in turn
    for a module that sets ``CENTRAL_ENGINES = ENGINES``."""
    return make_central_db(getattr(request, "param", "sqlite"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with ``CENTRAL_ENGINES = ENGINES`` runs every test that uses central's
    database once per engine."""
    engines = getattr(metafunc.module, "CENTRAL_ENGINES", None)
    if engines and "central_db" in metafunc.fixturenames:
        metafunc.parametrize("central_db", engines, indirect=True)


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves by hand (``clock.advance(s)``), for a central and its clients."""
    return FakeClock()


def _on_fake_clock(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A module with ``CENTRAL_ON_FAKE_CLOCK = True`` runs central and its client on ``clock``."""
    if not getattr(request.module, "CENTRAL_ON_FAKE_CLOCK", False):
        return {}
    return {"clock": request.getfixturevalue("clock")}


@pytest.fixture
def central(request: pytest.FixtureRequest, tmp_path: Path, central_seed: dict[str, Any],
            central_db: str | Path) -> Iterator[CentralServer]:
    """The reference central on 127.0.0.1 over ``central_db``; stopped (every handler
    thread joined) after the test. On the ``clock`` fixture, with burn reservations living
    60 s, in a module that sets ``CENTRAL_ON_FAKE_CLOCK = True``."""
    options = _on_fake_clock(request)
    if options:
        options["reservation_ttl_s"] = 60
    with running_central(tmp_path / "central", central_seed, db_path=central_db, **options) as server:
        yield server


@pytest.fixture
def client(request: pytest.FixtureRequest, central: CentralServer) -> Iterator[CentralClient]:
    """A lane's client (store S001, lane L01) for ``central`` (on its clock, as central is)."""
    with make_client(central, **_on_fake_clock(request)) as c:
        yield c


@pytest.fixture
def lanes(central: CentralServer, clock: FakeClock) -> Iterator[tuple[CentralClient, CentralClient]]:
    """Two lanes' clients of store S001 (L01, L02) for ``central``, on ``clock``: what one lane holds
    and the other is told."""
    with make_client(central, lane_id="L01", clock=clock) as one, make_client(central, lane_id="L02", clock=clock) as two:
        yield one, two


# --- lanes in child processes ---------------------------------------------------------------------


@pytest.fixture
def start_lane(central: CentralServer) -> Iterator[Callable[..., LaneProcess]]:
    """start_lane(folder, printer="none", extra_config="", **lane_config kwargs): a daemon
    started and synced with ``central``; every lane started is stopped after the test,
    before central."""
    started: list[LaneProcess] = []

    def start(folder: Path, **kwargs: Any) -> LaneProcess:
        lane = launch_lane(folder, central, **kwargs)
        started.append(lane)
        return lane

    yield start
    for lane in started:
        lane.stop()


@pytest.fixture
def printer() -> Iterator[PrinterEmulator]:
    """A network receipt printer on 127.0.0.1 (tests/support/printer_emulator.py), closed after the test;
    ``printer.url`` is its tcp:// URL, ``printer.state`` what it answers to DLE EOT."""
    with PrinterEmulator(idle_timeout=3.0) as emulator:
        yield emulator


# --- pseudo-terminals -----------------------------------------------------------------------------


@pytest.fixture
def pty_pair() -> Iterator[Callable[[], tuple[int, int]]]:
    """pty_pair() -> (master, slave) file descriptors, the slave in raw mode; closed after the test."""
    fds: list[int] = []

    def open_pair() -> tuple[int, int]:
        master, slave = os.openpty()
        tty.setraw(slave)
        fds.extend((master, slave))
        return master, slave

    yield open_pair
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass  # the test closed it (an unplug)

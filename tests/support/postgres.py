"""A throwaway PostgreSQL cluster for tests, from Debian's binaries.

    with PostgresCluster.start(tmp_root) as cluster:
        dsn = cluster.create_database("t1")      # postgresql://posd@127.0.0.1:PORT/t1
        ...
        cluster.drop_database("t1")

``initdb`` and ``postgres`` refuse to run as root (PITFALLS.md), so as root
the cluster runs as the package's ``postgres`` user through ``runuser``, in
a directory that user owns; as anyone else it runs as that user. It listens
on 127.0.0.1 on a free port and keeps its unix socket in its own directory.
fsync, full_page_writes and synchronous_commit are off: a test cluster is
thrown away, never a place for data that must survive a power cut.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

TEST_ONLY_SETTINGS = {
    "fsync": "off", "full_page_writes": "off", "synchronous_commit": "off",  # tests only: never in production
    "listen_addresses": "127.0.0.1", "max_connections": "200", "shared_buffers": "64MB",
    "log_min_messages": "warning", "max_prepared_transactions": "0",
}


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin that has initdb."""
    root = Path("/usr/lib/postgresql")
    found = sorted((p for p in root.glob("*/bin") if (p / "initdb").exists()),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (scripts/bootstrap installs Debian's postgresql package)")
    return found[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """One initdb'd cluster, started with pg_ctl; ``stop()`` removes everything it made."""

    def __init__(self, root: Path, port: int, run_as: str | None) -> None:
        self.root, self.port, self.run_as = root, port, run_as
        self.data, self.sockets, self.log = root / "data", root / "sockets", root / "postgres.log"
        self.bin = postgres_bin()
        self.user = "posd"  # the bootstrap superuser initdb creates
        self._template_ready = False

    @classmethod
    def start(cls, parent: str | Path | None = None) -> PostgresCluster:
        run_as = "postgres" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="posd-pg-", dir=parent))
        cluster = cls(root, free_port(), run_as)
        try:
            cluster._init_and_start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(a) for a in args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}")

    def _init_and_start(self) -> None:
        self.sockets.mkdir()
        if self.run_as:
            owner = pwd.getpwnam(self.run_as)
            for path in (self.root, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run(self.bin / "initdb", "-D", self.data, "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")
        options = " ".join(f"-c {k}={v}" for k, v in TEST_ONLY_SETTINGS.items())
        options += f" -p {self.port} -k {self.sockets}"
        self._run(self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    TEMPLATE = "posd_central_template"

    def create_database(self, name: str, template: bool = False) -> str:
        """A new database; ``template``: a copy of one with central's schema already made
        (creating the schema once per session keeps a test's database a quick file copy)."""
        if template and not self._template_ready:
            self._make_template()
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{self.TEMPLATE}"' if template else ""))
        return self.dsn(name)

    def _make_template(self) -> None:
        from posd.sync.central.store_pg import PgStore

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.TEMPLATE}"')
        PgStore(self.dsn(self.TEMPLATE), pool_size=1).close()
        self._template_ready = True

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "60", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass  # not started: nothing to stop
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

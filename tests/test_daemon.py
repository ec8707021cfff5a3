"""The daemon as systemd sees it: READY, watchdog, clean stop, refusing a bad ledger."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from posd.sdnotify import Notifier
from tests.support.central_fixture import demo_seed
from tests.support.lane import LaneProcess, free_port, lane_config, sale_body

ROOT = Path(__file__).parent.parent
SECRET = demo_seed()["stores"]["S001"]["secret"]


@pytest.fixture
def central_seed():
    return demo_seed()


def test_notifier_speaks_sd_notify(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.watchdog_s == 2.0
        assert n.ready("listening")
        assert sock.recv(256) == b"READY=1\nSTATUS=listening"
        assert n.watchdog()
        assert sock.recv(256) == b"WATCHDOG=1"
    assert not Notifier({}).ready()  # not under systemd: a quiet no-op
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_s is None  # meant for another pid


def test_ready_after_api_listens_then_watchdog_then_clean_stop(tmp_path, central):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    port = free_port()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="none", port=port)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    proc = subprocess.Popen([sys.executable, "-m", "posd", "run", "--config", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        messages = []
        while not any(m.startswith(b"READY=1") for m in messages):
            messages.append(sock.recv(256))
        # READY means the API answers now, not "soon"
        assert requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200
        # between the watchdog pings, STATUS= follows the lane's state (test_sd_status_follows_the_lane)
        after = [sock.recv(256) for _ in range(6)]
        assert [m for m in after if not m.startswith(b"STATUS=")].count(b"WATCHDOG=1") >= 3, after
        assert all(m in (b"WATCHDOG=1",) or m.startswith(b"STATUS=") for m in after), after
        proc.terminate()
        assert proc.wait(15) == 0
        rest = []
        sock.settimeout(0.5)
        try:
            while True:
                rest.append(sock.recv(256))
        except TimeoutError:
            pass
        assert b"STOPPING=1" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


def test_corrupt_ledger_stops_with_a_clear_error_and_is_not_overwritten(tmp_path, central):
    port = free_port()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="none", port=port)
    state = cfg.parent / "state"
    state.mkdir()
    ledger = state / "ledger.db"
    garbage = b"SQLite format 3\x00" + os.urandom(8192)
    ledger.write_bytes(garbage)
    proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert "ledger.db" in proc.stderr and "left untouched" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert ledger.read_bytes() == garbage


def refused_start(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)


def test_a_ledger_damaged_after_use_is_refused_without_a_byte_written(tmp_path, central):
    """A real ledger with pages overwritten (and its header saying rollback journal, as a copy may):
    the integrity check runs on a read-only connection, so the refused file keeps every byte."""
    port = free_port()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="none", port=port)
    LaneProcess(cfg, port).start().stop()
    ledger = cfg.parent / "state" / "ledger.db"
    data = bytearray(ledger.read_bytes())
    assert len(data) >= 6 * 4096
    data[18:20] = b"\x01\x01"  # journal_mode=WAL would write 2, 2 here
    data[2 * 4096:5 * 4096] = os.urandom(3 * 4096)
    ledger.write_bytes(bytes(data))
    for side in ("-wal", "-shm"):
        Path(f"{ledger}{side}").unlink(missing_ok=True)
    proc = refused_start(cfg)
    assert proc.returncode == 3, proc.stderr
    assert "integrity check" in proc.stderr and "left untouched" in proc.stderr and "Traceback" not in proc.stderr
    assert ledger.read_bytes() == bytes(data)


def test_an_empty_ledger_is_refused_not_taken_for_a_new_lane(tmp_path, central):
    """posd writes a ledger's header first: an empty ledger.db is a history lost (or a first start cut
    short), and starting a new one over it would hide the loss. Refused (3), left as it is."""
    port = free_port()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="none", port=port)
    state = cfg.parent / "state"
    state.mkdir()
    (state / "ledger.db").write_bytes(b"")
    proc = refused_start(cfg)
    assert proc.returncode == 3, proc.stderr
    assert "is empty (0 bytes)" in proc.stderr and "Traceback" not in proc.stderr
    assert (state / "ledger.db").read_bytes() == b"" and not (state / "ledger.db-wal").exists()


def test_a_wal_without_its_ledger_is_refused_and_kept(tmp_path, central):
    """ledger.db gone but its -wal there (the newest commits): SQLite would start a new file and drop
    them. Refused (3); the -wal is kept and no ledger.db is made."""
    port = free_port()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="none", port=port)
    state = cfg.parent / "state"
    state.mkdir()
    wal = state / "ledger.db-wal"
    wal.write_bytes(b"\x37\x7f\x06\x82" + os.urandom(4096))
    kept = wal.read_bytes()
    proc = refused_start(cfg)
    assert proc.returncode == 3, proc.stderr
    assert "ledger.db-wal" in proc.stderr and "Traceback" not in proc.stderr
    assert wal.read_bytes() == kept and not (state / "ledger.db").exists()


def meta_boot(ledger: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT value FROM meta WHERE key = 'boot'").fetchone()[0]
    finally:
        conn.close()


def test_a_second_posd_on_the_same_storage_folder_is_refused(tmp_path, central):
    """Two daemons on one ledger would share a seq counter and print each other's slips: the second
    exits 1 (may be retried: systemd starts it again once the first stopped), naming the first's pid,
    and touches nothing (the first's print queue is not requeued, its boot not counted)."""
    port = free_port()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="none", port=port)
    lane = LaneProcess(cfg, port).start()
    try:
        lane.wait_synced()  # the sale below needs the program
        other = cfg.parent / "other.toml"
        other.write_text(cfg.read_text().replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"))
        boot = meta_boot(lane.state / "ledger.db")
        proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(other)],
                              capture_output=True, text=True, timeout=30, cwd=cfg.parent)
        assert proc.returncode == 1, proc.stderr
        assert f"another posd (pid {lane.proc.pid})" in proc.stderr and "Traceback" not in proc.stderr
        assert meta_boot(lane.state / "ledger.db") == boot
        assert lane.post("/v1/transactions", {"transaction_id": "T-one-ledger", "occurred_at": "2026-11-24T09:15:00Z",
                                              "currency": "PLN", "total": 100, "lines": []}).status_code == 200
    finally:
        lane.stop()
    LaneProcess(cfg, port).start().stop()  # the lock went with the first: the lane starts again


def test_bad_config_exits_2_naming_the_key(tmp_path):
    cfg = tmp_path / "posd.toml"
    cfg.write_text('[lane]\nstore_id = "S1"\nlane_id = "L1"\nlocale = "xx"\n[central]\nurl = "http://127.0.0.1:1"\n')
    proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "lane.locale" in proc.stderr and "line 4" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_token_file_gone_bad_after_the_check_is_named_before_storage_is_touched(tmp_path):
    """The daemon's own look at the token (the file may change after `config check`): api.token_file is
    named, not storage.dir, and no folder, lock or database is made for a start that cannot happen."""
    from posd.config import ConfigError, load
    from posd.daemon import Daemon

    cfg = lane_config(tmp_path / "lane", central_url="http://127.0.0.1:9", secret="x", printer="none",
                      port=free_port(), storage_dir="state")
    cfg.write_text(cfg.read_text().replace("[storage]", f'token_file = "{tmp_path / "token"}"\n\n[storage]'))
    config = load(cfg, check_files=True)
    for token in (b"abc\xff\xfe\n", b"", None):
        if token is None:
            (tmp_path / "token").unlink()
            (tmp_path / "token").mkdir()
        else:
            (tmp_path / "token").write_bytes(token)
        with pytest.raises(ConfigError) as err:
            Daemon(config).open()
        assert err.value.key == "api.token_file" and str(tmp_path / "token") in str(err.value), str(err.value)
        assert not (tmp_path / "lane" / "state").exists()


def test_corrupt_cache_is_rebuilt_from_central(tmp_path, central):
    port = free_port()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="none", port=port)
    state = cfg.parent / "state"
    state.mkdir()
    (state / "cache.db").write_bytes(b"garbage" * 1000)
    lane = LaneProcess(cfg, port).start()
    try:
        lane.wait_synced()
        assert lane.health()["cache"]["rebuilt"] is True
        assert lane.get("/v1/members/2900000000018").json()["member_id"] == "M0001"
    finally:
        lane.stop()


def test_ledger_and_cache_deleted_while_posd_runs_are_written_back_and_nothing_is_lost(tmp_path, start_lane):
    """`rm ledger.db*` (or a move aside) with posd running: sales went on answering 200 into the
    deleted file and were gone at the next start, while health, the status page and lookups answered
    500 (new connections could not open the file). cache.db deleted broke lookups until a restart."""
    lane = start_lane(tmp_path / "lane")
    assert lane.post("/v1/transactions", sale_body("del-1")).status_code == 200
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm", "cache.db", "cache.db-wal", "cache.db-shm"):
        (lane.state / name).unlink(missing_ok=True)
    # until posd has written them back (within a second) a read may find no file: 503 storage_failed,
    # never a 500, never a sale answered that a restart would not find
    first = lane.post("/v1/transactions", sale_body("del-2"))
    assert first.status_code == 200 or (first.status_code, first.json()["code"]) == (503, "storage_failed")
    lane.wait_for(lambda: (lane.state / "cache.db").exists() and (lane.state / "ledger.db").exists(), 10,
                  "ledger.db and cache.db written back")
    answers = [lane.post("/v1/transactions", sale_body("del-2")), lane.get("/v1/members/2900000000018"),
               lane.post("/v1/transactions", sale_body("del-3")),
               requests.get(f"{lane.base}/v1/health", timeout=5), requests.get(f"{lane.base}/", timeout=5)]
    assert [a.status_code for a in answers] == [200] * 5, [a.text[:200] for a in answers]
    aside = tmp_path / "aside"
    aside.mkdir()
    (lane.state / "ledger.db").rename(aside / "ledger.db")  # moved away without its -wal, posd running
    lane.wait_for(lambda: (lane.state / "ledger.db").exists(), 10, "ledger.db written back")
    assert lane.post("/v1/transactions", sale_body("del-4")).status_code == 200
    import sqlite3

    moved = sqlite3.connect(aside / "ledger.db")  # whole where it went: its WAL was checkpointed into it
    assert moved.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert moved.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] >= 3
    moved.close()
    assert lane.health()["status"] != "error" and "written back" in lane.log.read_text()
    assert "Traceback" not in lane.log.read_text()  # a read in the window is one line and a 503, not a crash
    lane.stop()
    lane.start()
    for tid in ("del-1", "del-2", "del-3", "del-4"):  # every sale answered is in the ledger posd starts on
        again = lane.post("/v1/transactions", sale_body(tid))
        assert again.headers.get("Idempotent-Replayed") == "true", tid
    assert lane.get("/v1/members/2900000000018").status_code == 200


def test_a_token_written_while_posd_runs_is_in_force_without_a_restart(tmp_path, start_lane):
    """Store IT writes the POS's token into api.token_file: every POS request was 401 until a restart,
    while doctor said the files were fine."""
    lane = start_lane(tmp_path / "lane")
    old = lane.token
    (lane.state / "api.token").write_text("pos-token-from-the-vendor\n")
    lane.token = "pos-token-from-the-vendor"
    lane.wait_for(lambda: lane.get("/v1/members/2900000000018").status_code == 200, 10, "the new token in force")
    assert lane.post("/v1/transactions", sale_body("tok-1")).status_code == 200  # the sale's fast path too
    lane.token = old
    refused = lane.post("/v1/transactions", sale_body("tok-2"))
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
    (lane.state / "api.token").write_text("")  # unusable: the token in force stays
    time.sleep(1.5)
    lane.token = "pos-token-from-the-vendor"
    assert lane.get("/v1/members/2900000000018").status_code == 200
    assert "api.token_unusable" in lane.log.read_text() or "token in force stays" in lane.log.read_text()


def test_a_ledger_replaced_while_posd_runs_is_never_written_over(tmp_path, start_lane):
    lane = start_lane(tmp_path / "lane")
    assert lane.post("/v1/transactions", sale_body("rep-1")).status_code == 200
    other = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(other).execute("CREATE TABLE restored (x)").connection.commit()
    for side in ("-wal", "-shm"):
        (lane.state / f"ledger.db{side}").unlink(missing_ok=True)
    other.rename(lane.state / "ledger.db")
    refused = lane.post("/v1/transactions", sale_body("rep-2"))
    assert (refused.status_code, refused.json()["code"]) == (503, "storage_failed"), refused.text
    assert "replaced by another file" in refused.json()["message"]
    lane.wait_for(lambda: lane.health()["status"] == "error", 10, "health red")
    for _ in range(5):  # a health document every time (not a 503), from whichever worker thread answers it
        assert requests.get(f"{lane.base}/v1/health", timeout=5).json()["status"] == "error"
    restored = sqlite3.connect(lane.state / "ledger.db")
    assert [r[0] for r in restored.execute("SELECT name FROM sqlite_master")] == ["restored"]  # never written over
    # the sale posd answered before is not lost with its file: its own ledger is kept beside the new one
    (kept,) = lane.state.glob("ledger.db.open-copy-*")
    assert sqlite3.connect(kept).execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1


def test_posd_scan_without_a_running_daemon_says_so(tmp_path):
    cfg = lane_config(tmp_path / "lane", central_url="http://127.0.0.1:9", secret="x", printer="none",
                      port=free_port())
    proc = subprocess.run([sys.executable, "-m", "posd", "scan", "2900000000018", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "is posd running?" in proc.stderr


def test_posd_scan_never_types_into_the_pty_a_dead_posds_link_names(tmp_path):
    """A posd killed with -9 leaves its link; the pty it named went to another lane, or a terminal:
    `posd scan` typed the code and its Enter there and said it had."""
    master, slave = os.openpty()
    try:
        link = tmp_path / "front"
        link.symlink_to(os.ttyname(slave))
        cfg = lane_config(tmp_path / "lane", central_url="http://127.0.0.1:9", secret="x", printer="none",
                          port=free_port(), scanner=f"pty://{link}?suffix=CR")
        (cfg.parent / "state").mkdir()  # it ran here before
        proc = subprocess.run([sys.executable, "-m", "posd", "scan", "2900000000018", "--config", str(cfg)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1 and "no posd is running on" in proc.stderr and "nothing typed" in proc.stderr
        os.set_blocking(master, False)
        with pytest.raises(BlockingIOError):
            os.read(master, 100)
    finally:
        os.close(master)
        os.close(slave)


def test_posd_scan_into_a_path_something_else_holds_says_what_is_there(tmp_path):
    """A regular file where the scanner's pty goes (posd cannot make its pty there either): a traceback."""
    link = tmp_path / "inway"
    link.write_text("")
    cfg = lane_config(tmp_path / "lane", central_url="http://127.0.0.1:9", secret="x", printer="none",
                      port=free_port(), scanner=f"pty://{link}?suffix=CR")
    proc = subprocess.run([sys.executable, "-m", "posd", "scan", "2900000000018", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == f"posd scan: {link} is not the scanner's pty but a file: move it away: a running " \
                          "posd makes its link again within a second (its log names it too)\n"


def test_posd_scan_names_the_scanner_it_lacks_and_asks_for_one_code(tmp_path):
    """`--scanner nope` said "the config has no pty:// scanner" (it has one, called front); a CODE and
    --member-token together were told to give one of them, as if neither had been given."""
    cfg = lane_config(tmp_path / "lane", central_url="http://127.0.0.1:9", secret="x", printer="none",
                      port=free_port())
    cfg.write_text(cfg.read_text() + '\n[[scanner]]\nname = "back"\nurl = "serial:///dev/null?baudrate=9600"\n')

    def scan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "posd", "scan", *args, "--config", str(cfg)],
                              capture_output=True, text=True, timeout=30)

    proc = scan("123", "--scanner", "nope")
    assert proc.returncode == 2 and "no scanner called nope (its scanners: front, back)" in proc.stderr, proc.stderr
    proc = scan("123", "--scanner", "back")
    assert proc.returncode == 2 and "scanner back is not a pty:// scanner" in proc.stderr, proc.stderr
    proc = scan("123", "--member-token", "M0001")
    assert proc.returncode == 2 and "give only one of a CODE, --member-token" in proc.stderr, proc.stderr
    proc = scan()
    assert proc.returncode == 2 and "give one of a CODE" in proc.stderr, proc.stderr
    proc = scan("29000\r00000018")  # said it typed one code: the lane read two
    assert proc.returncode == 2 and "CODE holds a control character" in proc.stderr, proc.stderr

def demo_output(proc: subprocess.Popen, last: str, timeout: float) -> str:
    """What `posd demo` printed up to the line starting with ``last`` (or its end, or the timeout)."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith(last) or not line:
            break
    return "".join(lines)


def demo_config(tmp_path: Path) -> tuple[Path, int]:
    """config/demo.toml on free ports and a scratch folder; (its path, the API port)."""
    demo = (ROOT / "config" / "demo.toml").read_text()
    api, central_port = free_port(), free_port()
    demo = demo.replace("127.0.0.1:8765", f"127.0.0.1:{api}").replace("127.0.0.1:8780", f"127.0.0.1:{central_port}")
    demo = demo.replace("../var/demo", str(tmp_path / "var"))
    cfg = tmp_path / "demo.toml"
    cfg.write_text(demo)
    return cfg, api


def test_demo_starts_central_and_lane_and_prints_what_to_try(tmp_path):
    """`make run`'s code path, on free ports so it cannot collide with a real demo."""
    cfg, api = demo_config(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "posd", "demo", "--config", str(cfg),
                             "--seed", str(ROOT / "config" / "demo-seed.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        out = demo_output(proc, "Demo cards:", 60)
        assert "posd scan 2900000000018" in out and "/v1/transactions" in out
        # in the order that works: the stream open before the scan; the status page's address given
        assert out.index("/v1/events") < out.index("posd scan") < out.index("/v1/transactions")
        assert f"status page:    http://127.0.0.1:{api}/" in out
        scan = subprocess.run([sys.executable, "-m", "posd", "scan", "2900000000018", "--config", str(cfg)],
                              check=True, timeout=10, capture_output=True, text=True)
        assert scan.stdout.strip() == f"typed 2900000000018 + CR into scanner scanner0 ({tmp_path / 'var' / 'scanner0'})"
        token = (tmp_path / "var" / "api.token").read_text().strip()
        resp = requests.post(f"http://127.0.0.1:{api}/v1/transactions", timeout=10,
                             headers={"Authorization": f"Bearer {token}"},
                             json={"transaction_id": "demo-1", "member": "2900000000025",
                                   "occurred_at": "2026-11-20T10:15:00+01:00", "currency": "PLN", "total": 5000})
        assert resp.status_code == 200, resp.text
        slip = tmp_path / "var" / "slips" / "demo-1.txt"
        deadline = time.monotonic() + 10
        while not slip.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "Żółkiewski" in slip.read_text()
    finally:
        proc.terminate()
        proc.wait(20)


def _as_a_script_starts_it() -> None:
    """A background job of a shell without job control (SIGINT ignored), under nohup (SIGHUP too)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_the_demo_started_by_a_script_stops_everything_when_it_is_signalled_alone(tmp_path, sig):
    """A script's background job starts with SIGINT ignored: SIGINT to the demo alone left central
    and the lane serving. kill -9 of the demo left them serving too. Now SIGINT stops all (exit 0),
    and the children end with the demo however it ends. A SIGHUP nohup ignores stays ignored."""
    cfg, api = demo_config(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "posd", "demo", "--config", str(cfg),
                             "--seed", str(ROOT / "config" / "demo-seed.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=_as_a_script_starts_it)
    children: list[int] = []
    try:
        assert "Demo cards:" in demo_output(proc, "Demo cards:", 60)
        children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert len(children) == 2  # central and the lane
        if sig == signal.SIGINT:
            proc.send_signal(signal.SIGHUP)  # ignored, as nohup asked
            time.sleep(1)
            assert proc.poll() is None and requests.get(f"http://127.0.0.1:{api}/v1/health", timeout=5).ok
        proc.send_signal(sig)
        assert proc.wait(30) == (0 if sig == signal.SIGINT else -signal.SIGKILL)
        deadline = time.monotonic() + 20
        while any(Path(f"/proc/{c}").exists() and "Z" not in _proc_state(c) for c in children) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [c for c in children if Path(f"/proc/{c}").exists() and "Z" not in _proc_state(c)] == []
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{api}/v1/health", timeout=2)
    finally:
        for pid in [proc.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(20)


def test_the_demo_refuses_ports_another_process_serves_before_starting_anything(tmp_path):
    """Another server on the lane's port answered the demo's health check: it printed "posd demo is
    running" and then that its own lane had ended."""
    cfg, api = demo_config(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", api))
        squatter.listen()
        done = subprocess.run([sys.executable, "-m", "posd", "demo", "--config", str(cfg),
                               "--seed", str(ROOT / "config" / "demo-seed.json")],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is running" not in done.stdout, done.stdout
    assert f"127.0.0.1:{api}, the lane of {cfg}'s address, is in use by another process" in done.stderr
    assert not (tmp_path / "var").exists()  # nothing started, nothing made


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_the_demo_refuses_a_second_lane_on_the_first_lanes_storage_or_port_up_front(tmp_path):
    """The first lane's config given as the second printed "A second lane ... is running ... Second lane
    ready." and only then the lock's refusal. A second lane with the first's storage folder or API port
    cannot run: it is refused before anything starts (exit 2), naming what they share."""
    api, api2, central_port = free_port(), free_port(), free_port()
    demo = (ROOT / "config" / "demo.toml").read_text().replace("127.0.0.1:8765", f"127.0.0.1:{api}")
    demo = demo.replace("127.0.0.1:8780", f"127.0.0.1:{central_port}").replace("../var/demo", str(tmp_path / "var"))
    first = tmp_path / "demo.toml"
    first.write_text(demo)
    port_only = tmp_path / "other-dir.toml"  # its own folder, the same port
    port_only.write_text(demo.replace(str(tmp_path / "var"), str(tmp_path / "var2")).replace('"L01"', '"L02"'))
    dir_only = tmp_path / "sub" / "other-port.toml"  # its own port, the same folder written another way
    dir_only.parent.mkdir()
    dir_only.write_text(demo.replace(f"127.0.0.1:{api}", f"127.0.0.1:{api2}")
                        .replace(str(tmp_path / "var"), str(tmp_path / "sub" / ".." / "var")))
    for second, shared in ((first, f"storage folder {tmp_path / 'var'} and API port {api}"),
                           (port_only, f"API port {api}"), (dir_only, "storage folder")):
        run = subprocess.run([sys.executable, "-m", "posd", "demo", "--config", str(first),
                              "--seed", str(ROOT / "config" / "demo-seed.json"), "--second-lane", str(second)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and f"has the first lane's {shared}" in run.stderr, run.stderr
        assert run.stdout == "" and "Traceback" not in run.stderr
        with socket.socket() as s:  # central was never started
            assert s.connect_ex(("127.0.0.1", central_port)) != 0

def test_the_demo_runs_a_second_lane_that_honours_the_first_lanes_vouchers(tmp_path):
    """README's "try this": a voucher issued at lane L01 is used at lane L02 of the demo."""
    api, api2, central_port = free_port(), free_port(), free_port()
    configs = []
    for name, port, default in (("demo.toml", api, "127.0.0.1:8765"), ("demo-lane2.toml", api2, "127.0.0.1:8766")):
        text = (ROOT / "config" / name).read_text().replace(default, f"127.0.0.1:{port}")
        text = text.replace("127.0.0.1:8780", f"127.0.0.1:{central_port}").replace("../var/", str(tmp_path) + "/")
        (tmp_path / name).write_text(text)
        configs.append(tmp_path / name)
    err = (tmp_path / "demo.err").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "posd", "demo", "--config", str(configs[0]),
                             "--seed", str(ROOT / "config" / "demo-seed.json"), "--second-lane", str(configs[1])],
                            stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        out = demo_output(proc, "Second lane ready.", 90)
        assert f"127.0.0.1:{api2}/v1/vouchers/CODE/use" in out and "/v1/redemptions" in out
        tokens = [(tmp_path / d / "api.token").read_text().strip() for d in ("demo", "demo-lane2")]
        issued = requests.post(f"http://127.0.0.1:{api}/v1/redemptions", timeout=10,
                               headers={"Authorization": f"Bearer {tokens[0]}"},
                               json={"redemption_id": "demo-r1", "member": "2900000000018", "reward_id": "free-coffee"})
        assert issued.status_code == 200 and issued.json()["authorised"] == "online", issued.text
        code = issued.json()["voucher"]["code"]
        used = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until lane L01 has pushed the redemption to central
            used = requests.post(f"http://127.0.0.1:{api2}/v1/vouchers/{code}/use", timeout=10,
                                 headers={"Authorization": f"Bearer {tokens[1]}"},
                                 json={"transaction_id": "demo-0002", "member": "2900000000018"})
            if used.status_code != 404:
                break
            time.sleep(0.2)
        assert used.status_code == 200 and used.json()["issued_by"] == "S001/L01", used.text
        text = (tmp_path / "demo.err").read_text()
        logged = text.splitlines()[:None if text.endswith("\n") else -1]  # whole lines: each says whose it is
        assert {line.split("]")[0] + "]" for line in logged if line} >= {"[central]", "[S001/L01]", "[S001/L02]"}
        assert all(line.startswith(("[central] ", "[S001/L01] ", "[S001/L02] ")) for line in logged if line), logged
        # one lane dies: the demo stops, saying which one
        lane2 = subprocess.run(["pgrep", "-f", f"posd run --config {configs[1]}"], capture_output=True, text=True)
        os.kill(int(lane2.stdout.split()[0]), signal.SIGKILL)
        assert proc.wait(30) == 1
        said = (tmp_path / "demo.err").read_text()
        assert f"the daemon of {configs[1]}" in said and "ended with exit status -9" in said, said[-2000:]
    finally:
        proc.terminate()
        proc.wait(30)
        err.close()


def test_a_pty_scanner_takes_its_link_back_after_a_kill_9(tmp_path, start_lane):
    """kill -9 leaves the daemon's pty link behind, pointing at a pseudo-terminal that died with it;
    the restarted daemon replaces it with its own and the scanner works."""
    from tests.support.lane import ANNA

    lane = start_lane(tmp_path / "lane")  # the config names its scanner relative to the config: pty://scanner0
    link = lane.config.parent / "scanner0"
    lane.kill()
    assert link.is_symlink()  # no chance to clean up
    lane.start()
    lane.wait_synced()  # every scanner idle again
    assert link.is_symlink() and os.path.realpath(link).startswith("/dev/pts/")
    stream = lane.sse()
    try:
        lane.scan(ANNA)
        assert stream.next("member.identified")["data"]["member"]["member_id"] == "M0001"
    finally:
        stream.close()


def test_sighup_stops_the_daemon_cleanly_and_a_printer_written_none_is_no_printer(tmp_path, central):
    """A terminal closing (SIGHUP) stops posd as SIGTERM does: exit 0, no traceback.
    And a printer URL written NONE:// is no printer, as `none` is: no slip is composed or queued (the
    POS was told "queued" for slips nothing would print)."""
    port = free_port()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="NONE://", port=port)
    lane = LaneProcess(cfg, port).start()
    try:
        lane.wait_synced()  # healthy is not yet synced: a sale before the program is 503 program_unavailable
        sale = lane.post("/v1/transactions", {"transaction_id": "T-hup-1", "member": "2900000000018",
                                              "occurred_at": "2026-11-24T09:15:00Z", "currency": "PLN", "total": 1000,
                                              "lines": [{"sku": "5901234123457", "quantity": 1, "unit_price": 1000}]})
        assert sale.status_code == 200, sale.text
        assert sale.json()["slip"] == {"slip_id": None, "state": "none"}
        for name in ("ledger.db", "ledger.db-wal", "cache.db", "api.token", "posd.lock"):  # by hand, not by systemd
            assert (lane.state / name).stat().st_mode & 0o077 == 0, name  # members' names: posd's alone
        lane.proc.send_signal(signal.SIGHUP)
        assert lane.proc.wait(15) == 0
    finally:
        lane.stop()
    assert "Traceback" not in lane.log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_while_posd_starts_is_a_clean_stop(tmp_path, central, sig):
    """systemctl stop (or Ctrl-C) in the first moments of `posd run`, while the daemon is still being
    imported and before the ledger is opened, killed it: exit 143 and no word in the log. The stop is
    kept from the first line of `run` on: exit 0, a log line, nothing served, no traceback."""
    port = free_port()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="none", port=port)
    proc = subprocess.Popen([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ledger = cfg.parent / "state" / "ledger.db"
        caught = 0
        for _ in range(2000):  # until posd takes SIGTERM itself (SigCgt): at most 10 s
            with contextlib.suppress(FileNotFoundError):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                caught = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16)
            if caught & 1 << (signal.SIGTERM - 1) or proc.poll() is not None:
                break
            time.sleep(0.005)
        started = ledger.exists()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not started, "posd took SIGTERM only once its ledger was open: a stop before that was a kill"
    assert proc.returncode == 0, out
    assert f"{signal.Signals(sig).name} while starting" in out and "Traceback" not in out, out
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)


def test_a_program_the_lane_cannot_use_is_named_in_health_and_never_takes_the_lane_offline(tmp_path, central,
                                                                                           start_lane):
    """Central published a program with one float in it. The lane kept the program it had, as it should, but
    took the refusal for a failed contact with central: health said "central unreachable (internal:
    ProgramError)" without the path, every sale was offline, and every burn skipped central (a campaign
    coupon was used at two lanes)."""
    lane = start_lane(tmp_path / "lane")
    program, _ = central.store.program()
    kept = lane.health()["cache"]["program_version"]
    central.store.set_program({**program, "version": "broken-1", "weight": 1.5})

    def refused() -> list[dict]:
        return [i for i in lane.health()["issues"] if i["code"] == "program_refused"]

    found = lane.wait_for(refused, what="the refused program in health")
    assert found[0]["severity"] == "warning" and found[0]["detail"].startswith("weight: 1.5 is a float"), found
    health = lane.health()
    assert health["cache"]["program_version"] == kept and health["sync"]["online"], health
    assert not [i for i in health["issues"] if i["code"].startswith("central_")], health["issues"]
    assert any("broken-1" in p and "weight: 1.5 is a float" in p for p in health["problems"]), health["problems"]
    sold = lane.post("/v1/transactions", sale_body("T-kept"))
    assert (sold.status_code, sold.json()["offline"]) == (200, False), sold.text
    central.store.set_program({**program, "version": "fixed-2"})
    lane.wait_for(lambda: lane.health()["cache"]["program_version"] == "fixed-2" and not refused(),
                  what="the next program in force")


def test_a_program_republished_under_a_version_sales_earned_under_is_refused(tmp_path, central, start_lane):
    """Central republished other rules under the version in force: the lane took them, the same basket
    earned other points under the same version, and a return of a sale made under the new rules was
    worked out under the first ones, which ledger.db keeps by version (the member lost points)."""
    lane = start_lane(tmp_path / "lane")
    program, _ = central.store.program()
    first = lane.post("/v1/transactions", sale_body("T-first"))
    assert first.status_code == 200, first.text
    earned = first.json()["accrual"]["points"]
    doubled = [{**rule, "rates": {cur: {**rate, "points": rate["points"] * 2} for cur, rate in rule["rates"].items()}}
               if rule["type"] == "base_rate" else rule for rule in program["rules"]]
    assert doubled != program["rules"]
    central.store.set_program({**program, "rules": doubled})  # the same version

    def refused() -> list[dict]:
        return [i for i in lane.health()["issues"] if i["code"] == "program_refused"]

    found = lane.wait_for(refused, what="the refused program in health")
    assert "needs a new version" in found[0]["detail"] and program["version"] in found[0]["detail"], found
    again = lane.post("/v1/transactions", sale_body("T-again"))
    assert (again.status_code, again.json()["accrual"]["points"]) == (200, earned), again.text
    central.store.set_program(program)  # central back to the program in force: its 304 clears the refusal
    lane.wait_for(lambda: not refused(), what="the refusal cleared")
    central.store.set_program({**program, "rules": doubled})
    lane.wait_for(refused, what="the refused program in health again")
    # cache.db rebuilt meanwhile (no program in it): the lane sold nothing (503 program_unavailable) until
    # central named a new version; the rules its sales earned under by that version are its own
    lane.stop()
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        (lane.state / name).unlink(missing_ok=True)
    lane.start()
    lane.wait_for(lambda: lane.health()["cache"]["program_version"] == program["version"] and refused(),
                  what="the version's kept rules in force, the refusal named")
    rebuilt = lane.post("/v1/transactions", sale_body("T-rebuilt"))
    assert (rebuilt.status_code, rebuilt.json()["accrual"]["points"]) == (200, earned), rebuilt.text
    central.store.set_program({**program, "rules": doubled, "version": f"{program['version']}-b"})
    lane.wait_for(lambda: lane.health()["cache"]["program_version"] == f"{program['version']}-b" and not refused(),
                  what="the program under its new version in force")


def test_a_sale_earning_more_than_central_takes_is_refused_and_nothing_is_recorded(tmp_path, central, start_lane):
    """A program's points_per_unit of 10**12 passed: the sale was recorded and its points shown, central
    refused the accrual for good (bad_points, over 10**12) and it was quarantined."""
    lane = start_lane(tmp_path / "lane")
    program, _ = central.store.program()
    rule = {"id": "huge", "type": "per_unit", "currency": "points", "skus": ["5901234123457"],
            "points_per_unit": 10**12}
    uncapped = {k: v for k, v in program.items() if k != "transaction_caps"}  # the demo's 5000 a sale hid it
    central.store.set_program({**uncapped, "version": "huge-1", "rules": [*program["rules"], rule]})
    lane.wait_for(lambda: lane.health()["cache"]["program_version"] == "huge-1", what="the program in force")
    before = lane.get("/v1/members/2900000000018").json()["balances"]
    refused = lane.post("/v1/transactions", sale_body("T-huge"))
    assert (refused.status_code, refused.json()["code"]) == (422, "points_out_of_range"), refused.text
    quoted = lane.post("/v1/quotes", sale_body("T-huge") | {"codes": []})
    assert (quoted.status_code, quoted.json()["code"]) == (422, "points_out_of_range"), quoted.text
    assert lane.get("/v1/members/2900000000018").json()["balances"] == before
    assert lane.health()["sync"]["pending"] == 0


def test_every_answer_lists_every_currency_of_the_program(tmp_path, central, start_lane):
    """A POS reads balances.points the same way in the member view as in a sale's answer: a member with
    nothing yet in a currency (a new member; the demo's coffee stamps) has it at 0, not a missing key."""
    lane = start_lane(tmp_path / "lane")
    program, _ = central.store.program()
    codes = {c["code"] for c in program["currencies"]}
    assert len(codes) > 1
    enrolled = lane.post("/v1/members", {"card": "2900000000100", "display_name": "Ola N."})
    assert enrolled.status_code == 200, enrolled.text
    zero = {"confirmed": 0, "pending": 0, "total": 0, "available": 0, "maturing": 0, "expired": 0}
    assert enrolled.json()["member"]["balances"] == {code: zero for code in codes}
    assert lane.get("/v1/members/2900000000100").json()["balances"] == {code: zero for code in codes}
    anna = lane.get("/v1/members/2900000000018").json()["balances"]
    sold = lane.post("/v1/transactions", sale_body("T-keys")).json()["balance"]
    assert set(anna) == set(sold) == codes

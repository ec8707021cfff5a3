"""What store IT and an SRE see of a running lane: /metrics, the log, journald priorities, STATUS=,
the read-only status listener. Real daemons in child processes, real central, a TCP printer emulator."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from posd.logs import JournalFormatter, journal_stream, priority
from tests.support.central_fixture import demo_seed
from tests.support.lane import ANNA, LaneProcess, free_port, lane_config, sale_body

ODD_NAME = 'front "A"\\1'  # a quote and a backslash: both must be escaped in /metrics




@pytest.fixture
def central_seed():
    return demo_seed()


def start(folder: Path, central, printer_url: str = "none", *, extra: str = "", env: dict | None = None,
          **kwargs) -> LaneProcess:
    """A lane whose scanner has an awkward name, synced with central."""
    port = free_port()
    secret = kwargs.pop("secret", None) or "hex:" + central.store.store_secret("S001").hex()
    cfg = lane_config(folder, central_url=central.url, secret=secret, printer=printer_url, port=port, **kwargs)
    cfg.write_text(cfg.read_text().replace('name = "front"', 'name = ' + _toml(ODD_NAME)) + extra)
    lane = LaneProcess(cfg, port)
    lane.spawn(**(env or {}))
    lane.wait_healthy(30)
    return lane


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict, family: str, name: str | None = None, **labels: str) -> float | None:
    for s in fams[family].samples:
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_metrics_are_prometheus_text_with_every_figure_store_it_needs(tmp_path, central, printer):
    lane = start(tmp_path / "lane", central, printer.url)
    try:
        lane.wait_for(lambda: lane.health()["cache"]["members"] > 0, what="members")
        assert lane.post("/v1/transactions", sale_body("T-m1")).status_code == 200
        assert lane.post("/v1/transactions", sale_body("T-m1")).status_code == 200  # a retry: replayed
        assert lane.post("/v1/transactions", sale_body("T-m2", total=-5)).status_code == 422
        card = {**sale_body("T-m3"), "member": "4111111111111111"}  # refused while the body is read
        assert lane.post("/v1/transactions", card).json()["code"] == "payment_card"
        # refused before any route reads them: each counted all the same (they were not)
        url, json_type = f"{lane.base}/v1/transactions", {"Content-Type": "application/json"}
        for body in (b'{"transaction_id": "\xff"}', b"\xef\xbb\xbf{}", b"{" + b" " * (1 << 20) + b"}"):
            assert requests.post(url, data=body, headers=lane.headers(**json_type), timeout=30).status_code in (413, 422)
        assert requests.post(url, json=sale_body("T-m4"), headers={"Authorization": "Bearer wrong"},
                             timeout=10).status_code == 401
        redeem = {"redemption_id": "R-m1", "member": ANNA, "reward_id": "free-coffee"}
        assert lane.post("/v1/redemptions", redeem).status_code == 200
        for odd in ("PROPFIND", "MKCOL", "LOCK"):  # methods the HTTP parser knows and this API does not answer
            assert requests.request(odd, url, timeout=10).status_code in (401, 405)
        lane.wait_drained()

        def both_slips_printed() -> bool:  # the sale's and the redemption's, the printer idle again
            fams = families(requests.get(f"{lane.base}/metrics", timeout=10).text)
            return (sample(fams, "posd_print_jobs", "posd_print_jobs_total", outcome="printed") or 0) >= 2 and \
                sample(fams, "posd_device_state", device="printer", kind="printer", state="idle") == 1

        lane.wait_for(both_slips_printed, what="both slips printed")
        text = requests.get(f"{lane.base}/metrics", timeout=10).text
        fams = families(text)  # the official parser: a broken line (an unescaped quote) raises here
        for name, fam in fams.items():
            assert fam.documentation, f"{name} has no HELP"
            assert f"# TYPE {name}" in text or f"# TYPE {name}_total" in text, name
        assert "process_cpu_seconds" in fams and "process_resident_memory_bytes" in fams
        assert sample(fams, "posd_sales", "posd_sales_total", outcome="recorded") == 1
        assert sample(fams, "posd_sales", "posd_sales_total", outcome="replayed") == 1
        assert sample(fams, "posd_sales", "posd_sales_total", outcome="payment_card") == 1
        assert sample(fams, "posd_sales", "posd_sales_total", outcome="invalid_request") == 3
        assert sample(fams, "posd_sales", "posd_sales_total", outcome="payload_too_large") == 1
        assert sample(fams, "posd_sales", "posd_sales_total", outcome="unauthorized") == 1
        assert sample(fams, "posd_redemptions", "posd_redemptions_total", outcome="recorded") == 1
        assert sample(fams, "posd_http_request_duration_seconds", "posd_http_request_duration_seconds_count",
                      route="/v1/transactions", method="POST") == 4
        methods = {s.labels["method"] for s in fams["posd_http_request_duration_seconds"].samples}
        assert "PROPFIND" not in methods and "other" in methods, methods  # one series for all such, not one each
        assert sample(fams, "posd_print_jobs", "posd_print_jobs_total", outcome="printed") >= 1
        assert sample(fams, "posd_sync_push_attempts", "posd_sync_push_attempts_total", outcome="sent") >= 1
        assert sample(fams, "posd_sync_push_duration_seconds", "posd_sync_push_duration_seconds_count") >= 1
        assert sample(fams, "posd_sync_push_batch_events", "posd_sync_push_batch_events_sum") >= 1
        assert sample(fams, "posd_outbox_pending") == 0
        assert sample(fams, "posd_sync_last_push_success_timestamp_seconds") > time.time() - 600
        assert sample(fams, "posd_sync_last_pull_success_timestamp_seconds") > time.time() - 600
        assert sample(fams, "posd_members_cached") == len(demo_seed()["members"])
        assert sample(fams, "posd_cache_age_seconds") is not None
        assert sample(fams, "posd_device_state", device=ODD_NAME, kind="scanner", state="idle") == 1
        assert sample(fams, "posd_device_state", device="printer", kind="printer", state="idle") == 1
        assert 'device="front \\"A\\"\\\\1"' in text  # escaped as the text format wants it
        assert "2900000000018" not in text and "Anna" not in text
    finally:
        lane.stop()


def test_the_log_has_a_line_per_sale_sync_attempt_and_device_change_and_no_pii(tmp_path, central, printer):
    lane = start(tmp_path / "lane", central, printer.url)
    try:
        lane.wait_for(lambda: lane.health()["cache"]["members"] > 0, what="members")
        assert lane.post("/v1/transactions", sale_body("T-l1")).status_code == 200
        assert lane.post("/v1/transactions", sale_body("T-l2", member=None)).status_code == 200
        lane.wait_drained()
        lane.wait_for(lambda: "print job T-l1 printed" in lane.log.read_text(), what="T-l1 printed")
        printer.state = "paper_out"
        assert lane.post("/v1/transactions", sale_body("T-l3")).status_code == 200
        lane.wait_for(lambda: "printer: error paper_out" in lane.log.read_text(), what="paper out logged")
        central.stop()
        assert lane.post("/v1/transactions", sale_body("T-l4")).status_code == 200
        lane.wait_for(lambda: re.search(r"push failed: central unreachable: \w+", lane.log.read_text()),
                      what="a failed push with its reason")
    finally:
        lane.stop()
    log = lane.log.read_text()
    assert re.search(r"INFO posd\.api: sale T-l1 recorded: [^\n]*\+\d+ points[^\n]*, member, slip queued", log)
    assert re.search(r"sale T-l2 recorded: [^\n]*, no member, slip none", log)
    assert re.search(r"push: \d+ event\(s\), seq 1-\d+, in \d+ ms: \d+ accepted", log), log
    assert "scanner " + ODD_NAME + ": idle" in log
    assert "printer: idle" in log and "printer printer" not in log
    assert "print job T-l3 held: paper_out" in log
    assert ANNA not in log and "Anna" not in log and "Traceback" not in log


def test_under_journald_every_line_carries_its_priority(tmp_path, central):
    """JOURNAL_STREAM names the stream journald reads: posd prefixes <N> so `journalctl -p err` works."""
    log = tmp_path / "lane" / "posd.log"
    log.parent.mkdir(parents=True)
    log.touch()
    st = os.stat(log)
    lane = start(tmp_path / "lane", central, secret="wrong-secret",
                 env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    try:
        lane.wait_for(lambda: "<3>" in lane.log.read_text(), what="an error line (central refuses the secret)")
    finally:
        lane.stop()
    lines = [ln for ln in lane.log.read_text().splitlines() if ln and not ln.startswith("LOOP_GUARD")]
    assert lines and all(re.match(r"<[0-7]>", ln) for ln in lines), lines
    assert any(ln.startswith("<6>INFO posd.daemon: posd ") and " ready" in ln for ln in lines)
    assert any(ln.startswith("<3>ERROR posd.sync.relay:") and "refused our credentials" in ln for ln in lines)
    assert not any(re.match(r"<6>(WARNING|ERROR)", ln) for ln in lines)


def test_under_journald_a_run_that_cannot_start_says_why_once_at_error_priority(tmp_path):
    """Exit 2 (a config error) is where systemd does not restart posd and store IT must act: its line
    was stored at info, so doctor's `journalctl -p warning` missed it; a damaged ledger's (exit 3)
    came out twice."""
    good = lane_config(tmp_path / "lane", central_url="http://127.0.0.1:9", secret="x", printer="none",
                       port=free_port())
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('[lane]', '[lane]\nnot_a_key = 1', 1))
    damaged = tmp_path / "lane" / "state" / "ledger.db"
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(b"not a database" * 512)
    for config, code in ((bad, 2), (good, 3)):
        log = tmp_path / f"journal-{code}.log"
        log.touch()
        st = os.stat(log)
        with open(log, "w") as stderr:
            done = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(config)], stderr=stderr,
                                  stdout=subprocess.DEVNULL, timeout=60,
                                  env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        lines = [ln for ln in log.read_text().splitlines() if ln]
        assert done.returncode == code, lines
        said = [ln for ln in lines if not ln.startswith("<6>")]
        assert len(said) == 1 and said[0].startswith("<3>posd: "), lines


def test_journal_formatter_prefixes_every_line_and_needs_the_named_stream(tmp_path):
    record = __import__("logging").LogRecord("posd.x", 40, __file__, 1, "first\nsecond", None, None)
    assert JournalFormatter().format(record) == "<3>ERROR posd.x: first\n<3>second"
    assert [priority(n) for n in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert journal_stream(a, env) and not journal_stream(b, env)  # inherited, but not our stderr
        assert not journal_stream(a, {}) and not journal_stream(a, {"JOURNAL_STREAM": "x"})


def test_a_command_run_in_process_leaves_the_root_logger_as_it_found_it(tmp_path, capsys):
    """posd.cli.main inside another program (the tests call it): the handler it logged through
    must not outlive the command, or a device thread's next line, written after that program
    closed the stream, ends in "--- Logging error ---" (it did, around the serial tests)."""
    import contextlib
    import io
    import logging
    import threading

    from posd.cli import main

    cfg = lane_config(tmp_path / "lane", central_url="http://127.0.0.1:9", secret="x", printer="none",
                      port=free_port())
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):
        assert main(["scan", "2900000000018", "--config", str(cfg)]) == 1  # no daemon: says so and returns
    assert "is posd running?" in stream.getvalue()
    stream.close()  # as pytest closes a test's captured stream
    assert (root.handlers, root.level) == before
    scanner = threading.Thread(target=logging.getLogger("posd.drivers.base").warning,
                               args=("scanner front: error offline",))
    scanner.start()
    scanner.join()
    assert "Logging error" not in capsys.readouterr().err


def test_stopping_with_a_stream_client_and_clients_that_hang_up_leave_no_traceback(tmp_path, central):
    lane = start(tmp_path / "lane", central)
    stream = lane.sse()
    try:
        lane.scan(ANNA)
        stream.next("member.identified", timeout=15)
        # a client that hangs up mid-body, and one that hangs up before reading its answer
        with socket.create_connection(("127.0.0.1", lane.port), timeout=5) as sock:
            sock.sendall(b"POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                         + lane.token.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 500\r\n"
                         b"\r\n{\"transaction_id\": ")
        with socket.create_connection(("127.0.0.1", lane.port), timeout=5) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        second = lane.sse()
        second.close()  # gone without a word
        assert lane.health()["status"] in ("ok", "degraded")
        started = time.monotonic()
        assert lane.stop() == 0
        assert time.monotonic() - started < 15  # ended by posd, not by the test's kill
    finally:
        stream.close()
    log = lane.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def test_sd_notify_status_carries_the_lanes_state(tmp_path, central):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1)
    lane = start(tmp_path / "lane", central, env={"NOTIFY_SOCKET": path})
    try:
        def status_with(*words: str) -> str | None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    msg = sock.recv(4096).decode()
                except TimeoutError:
                    continue
                for field in msg.split("\n"):
                    if field.startswith("STATUS=") and all(w in field for w in words):
                        return field
            return None

        assert status_with("ok: central online, 0 waiting")
        central.stop()
        assert lane.post("/v1/transactions", sale_body("T-s1")).status_code == 200
        line = status_with("degraded", "central unreachable")
        assert line and "1 waiting" in line, line
    finally:
        lane.stop()
        sock.close()


def test_the_status_listener_shows_the_page_and_health_and_never_the_api(tmp_path, central):
    status_port = free_port()
    lane = start(tmp_path / "lane", central, extra=f'\n[status]\nlisten = "127.0.0.1:{status_port}"\n')
    try:
        base = f"http://127.0.0.1:{status_port}"
        page = requests.get(base + "/", timeout=10)
        assert page.status_code == 200 and "Sklep S001, kasa L01" in page.text
        health = requests.get(base + "/v1/health", timeout=10)
        assert health.status_code == 200 and health.json()["lane_id"] == "L01"
        # Every route of the API, with the right token: 404 on the status listener
        spec = requests.get(lane.base + "/openapi.json", timeout=10).json()
        routes = [(method.upper(), re.sub(r"\{[^}]+\}", "x1", path)) for path, ops in spec["paths"].items()
                  for method in ops if path not in ("/", "/v1/health")]
        assert len(routes) >= 10
        for method, path in [*routes, ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs")]:
            resp = requests.request(method, base + path, headers=lane.headers(), json={}, timeout=10)
            assert resp.status_code == 404, (method, path, resp.status_code)
            assert resp.json()["code"] == "not_found"
        # a route's path with a newline after it is no route (a pattern's $ matches before a final newline)
        for listener in (base, lane.base):
            for path in ("/%0A", "/v1/health%0A", "/v1/health%0D", "/metrics%0A"):
                resp = requests.get(listener + path, headers=lane.headers(), timeout=10)
                assert (resp.status_code, resp.json()["code"]) == (404, "not_found"), (listener, path, resp.text)
    finally:
        lane.stop()


def test_run_without_a_usable_status_listener_stops_cleanly(tmp_path, central):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = lane_config(tmp_path / "lane", central_url=central.url, printer="none", port=free_port(),
                          secret="hex:" + central.store.store_secret("S001").hex())
        cfg.write_text(cfg.read_text() + f'\n[status]\nlisten = "127.0.0.1:{port}"\n')
        before = requests.get(central.url + "/_admin/stats", timeout=10).json()["requests"]
        proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"could not listen: the status page on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
    # A lane that cannot listen never starts: it asks central nothing (a new ledger took a sync
    # identity of its own at central, and pulled the members, before it gave up).
    assert requests.get(central.url + "/_admin/stats", timeout=10).json()["requests"] == before


def test_the_ledger_size_counts_its_wal_the_same_in_health_metrics_and_doctor(tmp_path, central):
    """Between checkpoints the newest sales live in ledger.db-wal: health, /metrics and doctor all
    count the file with its -wal and -shm, to the byte (health's ledger_mb to 3 decimals)."""
    import json

    central.inject("push", "503", count=1_000_000)  # nothing is acknowledged: the ledger stays as the sales left it
    lane = start(tmp_path / "lane", central)
    try:
        lane.wait_for(lambda: lane.health()["cache"]["members"] > 0, what="members")
        for n in range(20):
            assert lane.post("/v1/transactions", sale_body(f"T-s{n}")).status_code == 200
        files = [lane.state / f"ledger.db{suffix}" for suffix in ("", "-wal", "-shm")]
        assert files[1].stat().st_size > 0  # the sales are in the WAL: what read as 0 MB before
        on_disk = sum(f.stat().st_size for f in files)
        storage = lane.health()["storage"]
        fams = families(requests.get(f"{lane.base}/metrics", timeout=10).text)
        proc = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(lane.config), "--json",
                               "--no-central"], capture_output=True, text=True, timeout=120)
        [ledger] = [c for c in json.loads(proc.stdout)["checks"] if c["check"] == "storage.ledger"]
        assert sum(f.stat().st_size for f in files) == on_disk  # nothing was written meanwhile
    finally:
        lane.stop()
    assert storage["ledger_bytes"] == on_disk
    assert storage["ledger_mb"] == round(on_disk / 2**20, 3) > 0
    assert sample(fams, "posd_ledger_size_bytes") == on_disk
    assert ledger["details"].get("bytes") == on_disk, ledger


def test_the_printers_name_from_the_config_is_its_name_in_health_and_metrics(tmp_path, central, printer):
    """`[printer] name` names the printer in health, /metrics and events, like a scanner's name."""
    lane = start(tmp_path / "lane", central, printer.url, extra='name = "receipts"\n')  # appended to [printer]
    try:
        lane.wait_for(lambda: any(d["kind"] == "printer" for d in lane.health()["devices"]), what="the printer")
        printers = [d for d in lane.health()["devices"] if d["kind"] == "printer"]
        assert [d["name"] for d in printers] == ["receipts"], printers
        fams = families(requests.get(f"{lane.base}/metrics", timeout=10).text)
        assert sample(fams, "posd_device_up", device="receipts", kind="printer") is not None
        assert sample(fams, "posd_device_up", device="printer", kind="printer") is None
    finally:
        lane.stop()

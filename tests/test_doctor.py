"""`posd doctor` finds each fault planted here and names it: a missing secret file, an unreadable or
missing device, central down, a clock skew, a full disk (a real tmpfs, filled; and the threshold on
the real file system), a corrupt cache.db, a printer out of paper, every config mistake; and says so
in the lane's language, with --json for fleet tools. Real daemons, a real central, a TCP printer."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest

from tests.support.central_fixture import demo_seed, running_central
from tests.support.disk import fill, small_tmpfs
from tests.support.lane import free_port, lane_config, sale_body
from tests.support.other_user import needs_root, posd_as_nobody, shared_tmp  # noqa: F401 (a fixture)

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "posd.service"
ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def central_seed():
    return demo_seed()


def doctor(cfg: Path, *args: str, user: str = ME) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(cfg), "--json", "--user", user,
                           "--unit", str(UNIT), *args], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "posd.drivers" not in proc.stderr, proc.stderr  # a device's state is a finding, not a log line too
    return proc.returncode, json.loads(proc.stdout)


def found(report: dict, check: str) -> list[dict]:
    return [c for c in report["checks"] if c["check"] == check]


def one(report: dict, check: str) -> dict:
    matches = found(report, check)
    assert len(matches) == 1, (check, [c["check"] for c in report["checks"]])
    return matches[0]


def offline_config(tmp_path: Path, central_url: str = "http://127.0.0.1:9", **kwargs) -> Path:
    return lane_config(tmp_path / "lane", central_url=central_url, secret="x", printer=kwargs.pop("printer", "none"),
                       port=free_port(), **kwargs)


def test_a_healthy_lane_passes_with_every_area_checked(tmp_path, central, printer, start_lane):
    lane = start_lane(tmp_path / "lane", printer=printer.url)
    code, report = doctor(lane.config)
    assert code == 0, [c for c in report["checks"] if c["result"] == "fail"]
    assert report["ok"] is True and report["failures"] == 0 and report["locale"] == "pl"
    assert {c["area"] for c in report["checks"]} == {"config", "files", "storage", "devices", "central", "sync",
                                                     "cache", "daemon", "unit"}
    for check in ("config", "storage.dir", "storage.disk", "storage.ledger", "storage.cache", "central.dns",
                  "central.tcp", "central.signature", "central.clock", "sync.outbox", "cache.members",
                  "daemon.running", "unit.security"):
        assert one(report, check)["result"] == "ok", one(report, check)
    assert one(report, "central.tls")["code"] == "tls_plain"  # loopback central speaks http
    status = one(report, "devices.printer.status")
    assert (status["result"], status["details"]["paper_state"]) == ("ok", "ok")
    assert "DLE EOT" in status["message"]
    assert "papier jest" in status["message"]  # "gotowa, papier jest"
    daemon = one(report, "daemon.running")
    assert daemon["details"]["version"] and daemon["details"]["uptime_s"] > 0
    assert one(report, "unit.security")["details"]["score"] <= 1.5
    assert abs(one(report, "central.clock")["details"]["skew"]) <= 1  # Date has whole seconds
    assert not found(report, "cache.currency")  # the program earns on the lane's PLN


def test_a_lane_currency_the_program_does_not_earn_on_is_named(tmp_path, central, start_lane):
    """`[lane] currency` is the till's money: a program that earns nothing on it refuses every sale."""
    lane = start_lane(tmp_path / "lane")
    lane.config.write_text(lane.config.read_text().replace('currency = "PLN"', 'currency = "CZK"'))
    code, report = doctor(lane.config)
    finding = one(report, "cache.currency")
    assert finding["result"] == "warn" and finding["details"]["currency"] == "CZK", finding
    assert "PLN" in finding["details"]["earned"] and "CZK" in finding["message"], finding
    assert lane.post("/v1/transactions", {**sale_body("T-czk"), "currency": "CZK"}).json()["code"] \
        == "unsupported_currency"
    # health was ok while every sale in the till's money was refused: red, as when sales cannot be recorded
    lane.stop()
    lane.start()
    health = lane.health()
    found = [i for i in health["issues"] if i["code"] == "currency_not_earned"]
    assert health["status"] == "error" and found[0]["values"]["currency"] == "CZK", health
    assert "PLN" in found[0]["values"]["earned"] and any("CZK" in p for p in health["problems"]), health
    # a config that never said the till's money (PLN by default) is amber: sales name their own currency
    lane.config.write_text(lane.config.read_text().replace('currency = "CZK"\n', ""))
    program, _ = central.store.program()
    # the same program in EUR alone: every PLN key and value becomes EUR (a map's EUR entry then wins)
    euro = json.loads(json.dumps({**program, "version": "eur-only"}).replace('"PLN"', '"EUR"'))
    central.store.set_program(euro)
    lane.stop()
    lane.start()
    lane.wait_for(lambda: lane.health()["cache"]["program_version"] == "eur-only", what="the EUR program")
    health = lane.health()
    (found,) = [i for i in health["issues"] if i["code"] == "currency_not_earned"]
    assert (health["status"], found["severity"], found["values"]["currency"]) == ("degraded", "warning", "PLN")


def test_another_lanes_daemon_on_the_port_is_not_this_lanes(tmp_path, central, start_lane):
    """A config for store S999 lane L77 on the API port of a running S001/L01 posd passed ("daemon ok",
    exit 0): doctor took any posd answering there for this lane's. /v1/health names its store and
    lane: another one's is a failure naming both, and what it reports is not taken as this lane's."""
    lane = start_lane(tmp_path / "lane")
    other = lane_config(tmp_path / "other", central_url=central.url, secret="x", printer="none", port=lane.port,
                        store_id="S999", lane_id="L77")
    code, report = doctor(other, "--no-central", "--lang", "en")
    finding = one(report, "daemon.running")
    assert code == 1 and (finding["result"], finding["code"]) == ("fail", "other_lane"), finding
    assert "store S001 lane L01" in finding["message"] and "store S999 lane L77" in finding["message"]
    assert not found(report, "daemon.version") and not [c for c in report["checks"] if c["code"] == "issue"]
    code, report = doctor(lane.config, "--no-central")  # the lane's own config: its own daemon
    assert one(report, "daemon.running")["code"] == "ok"


def test_a_unit_file_named_that_is_not_there_is_a_usage_error(tmp_path):
    """`posd doctor --unit /nope.service` gave a warning and exit 0, as if the lane were fine and
    only the score unknown: the file named on the command line is a mistake in the command (exit 2,
    naming it), like a --user that does not exist."""
    cfg = offline_config(tmp_path)
    for unit, problem in ((tmp_path / "nope.service", "does not exist"), (tmp_path, "is not a file")):
        run = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(cfg), "--no-central",
                              "--unit", str(unit)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and f"{unit} {problem}" in run.stderr, run.stderr
        assert run.stdout == "" and "Traceback" not in run.stderr


def test_a_missing_secret_file_is_named(tmp_path):
    cfg = offline_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('store_secret = "x"', 'store_secret_file = "store.secret"'))
    code, report = doctor(cfg, "--no-central")
    assert code == 1
    finding = one(report, "files.central.store_secret_file")
    assert (finding["result"], finding["code"]) == ("fail", "missing")
    assert str(tmp_path / "lane" / "store.secret") in finding["message"] and "nie istnieje" in finding["message"]
    (tmp_path / "lane" / "store.secret").mkdir()  # a folder in its place: no user reads it, root neither
    finding = one(doctor(cfg, "--no-central", "--lang", "en")[1], "files.central.store_secret_file")
    assert (finding["result"], finding["code"]) == ("fail", "not_file"), finding
    assert "is not a file" in finding["message"] and "central.store_secret_file" in finding["message"], finding


def test_a_client_key_that_is_not_the_certificates_fails(tmp_path):
    """Each file readable, so doctor said ok, while config check and posd run refused the pair: every
    contact with central would fail with an SSLError."""
    from tests.test_config import _certificate

    cert, _ = _certificate(tmp_path, "lane")
    _, other = _certificate(tmp_path, "other")
    other.chmod(0o644)  # as a copied key often is: its mode warning hid the mismatch
    cfg = offline_config(tmp_path, central_url="https://127.0.0.1:9")
    cfg.write_text(cfg.read_text().replace('store_secret = "x"',
                                           f'store_secret = "x"\nclient_cert = "{cert}"\nclient_key = "{other}"'))
    code, report = doctor(cfg, "--no-central", "--lang", "en")
    finding = one(report, "files.central.client_key")
    assert (code, finding["result"], finding["code"]) == (1, "fail", "invalid"), finding
    assert "key values mismatch" in finding["message"] and str(other) in finding["message"], finding


def test_a_secret_others_can_read_is_a_warning_and_a_bad_one_a_failure(tmp_path):
    cfg = offline_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('store_secret = "x"', 'store_secret_file = "store.secret"'))
    secret = tmp_path / "lane" / "store.secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    code, report = doctor(cfg, "--no-central", "--lang", "en")
    assert (one(report, "files.central.store_secret_file")["code"], report["locale"]) == ("mode", "en")
    assert "chmod 600" in one(report, "files.central.store_secret_file")["message"]
    secret.write_text("hex:xyz\n")
    code, report = doctor(cfg, "--no-central")
    assert code == 1 and one(report, "files.central.store_secret_file")["code"] == "invalid"


def test_an_api_token_posd_cannot_use_is_a_failure(tmp_path):
    """What `posd run` refuses (not UTF-8, empty) is a failure here too, not an "ok, mode 0600"."""
    cfg = offline_config(tmp_path)
    token = tmp_path / "lane" / "state" / "api.token"
    token.parent.mkdir()
    for contents, why in ((b"abc\xff\xfe\n", "is not UTF-8 text"), (b"\n", "is empty")):
        token.write_bytes(contents)
        token.chmod(0o600)
        code, report = doctor(cfg, "--no-central", "--lang", "en")
        finding = one(report, "files.api.token_file")
        assert (code, finding["result"], finding["code"]) == (1, "fail", "invalid"), finding
        assert why in finding["message"]


def test_an_unreadable_device_and_a_missing_one_are_named_with_owner_group_and_mode(tmp_path):
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        node = os.ttyname(slave)
        os.chmod(node, 0o600)
        cfg = offline_config(tmp_path, scanner=f"serial://{node}?baudrate=9600")
        cfg.write_text(cfg.read_text() + '\n[[card_reader]]\nname = "msr"\n'
                       'url = "msr+serial:///dev/serial/by-id/usb-MagTek-nothing-here"\n')
        code, report = doctor(cfg, "--no-central", user="nobody")
        assert code == 1
        denied = one(report, "devices.front")
        assert (denied["result"], denied["code"]) == ("fail", "denied")
        assert denied["details"]["mode"] == "0600" and denied["details"]["owner"] == pwd.getpwuid(os.getuid()).pw_name
        assert "nobody" in denied["message"] and node in denied["message"]
        missing = one(report, "devices.msr")
        assert (missing["result"], missing["code"]) == ("fail", "missing")
        assert "posd devices" in missing["message"]
    finally:
        os.close(master)
        os.close(slave)


def test_a_camera_clip_is_a_file_no_udev_rule_names(tmp_path):
    """doctor told store IT that no udev rule names a camera's still image, pointing them at the
    udev rules of docs/install.md for a file no rule could name."""
    still = tmp_path / "card.png"
    still.write_bytes(b"\x89PNG\r\n\x1a\n")
    code, report = doctor(offline_config(tmp_path, scanner=f"camera+file://{still}"), "--no-central", "--lang", "en")
    finding = one(report, "devices.front")
    assert finding["result"] == "ok" and "a file, not a device" in finding["message"], finding
    assert "no udev rule names it" not in finding["message"]


@pytest.mark.parametrize("holder, words", [("file", "is a file"), ("folder", "is a folder")])
def test_a_pty_path_something_else_holds_fails_where_it_said_ok(tmp_path, holder, words):
    """posd makes its pty's link there and replaces only a link: its scanner cannot start, and the
    lane cannot scan; doctor called it "a virtual device posd makes" and found nothing wrong."""
    link = tmp_path / "inway"
    link.write_text("") if holder == "file" else link.mkdir()
    cfg = offline_config(tmp_path, scanner=f"pty://{link}?suffix=CR")
    code, report = doctor(cfg, "--no-central", "--lang", "en")
    finding = one(report, "devices.front")
    assert (code, finding["result"], finding["code"]) == (1, "fail", "pty_blocked"), finding
    assert f"{link} {words}, not the link posd makes" in finding["message"], finding["message"]
    link.unlink() if holder == "file" else link.rmdir()
    link.symlink_to("/dev/pts/999")  # a link left by a posd not stopped cleanly: posd replaces it
    assert one(doctor(cfg, "--no-central", "--lang", "en")[1], "devices.front")["code"] == "virtual"


def test_a_pty_link_in_a_folder_posd_may_not_write_fails(tmp_path):
    """Doctor said ok for a pty:// scanner whose link's folder posd's user may not write: at every
    start the scanner was "permission denied"."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)  # root's
    tmp_path.chmod(0o755)
    cfg = offline_config(tmp_path, scanner=f"pty://{locked}/scanner?suffix=CR")
    code, report = doctor(cfg, "--no-central", "--lang", "en", user="nobody")
    finding = one(report, "devices.front")
    assert (code, finding["result"], finding["code"]) == (1, "fail", "pty_denied"), finding
    assert f"nobody may not make the link {locked}/scanner in {locked}" in finding["message"], finding["message"]
    assert one(doctor(cfg, "--no-central", "--lang", "en")[1], "devices.front")["code"] == "virtual"  # root may
    deeper = offline_config(tmp_path / "b", scanner=f"pty://{locked}/new/scanner?suffix=CR")  # a folder to make
    assert one(doctor(deeper, "--no-central", user="nobody")[1], "devices.front")["code"] == "pty_denied"


def test_central_down_is_named_layer_by_layer(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    central.stop()
    lane.wait_for(lambda: not lane.health()["sync"]["online"], what="the lane sees central gone")
    code, report = doctor(lane.config)
    assert code == 1
    assert one(report, "central.dns")["result"] == "ok"
    tcp = one(report, "central.tcp")
    assert (tcp["result"], tcp["code"]) == ("fail", "tcp_failed") and "127.0.0.1" in tcp["message"]
    assert [one(report, f"central.{c}")["result"] for c in ("tls", "signature", "clock")] == ["skip"] * 3
    told = one(report, "daemon.central_unreachable")
    assert told["result"] == "warn" and "Brak połączenia z centralą" in told["message"]


def test_a_central_that_hangs_up_unanswered_is_not_said_to_lack_a_date_header(tmp_path):
    """Doctor told store IT "central sent no Date header" after central had sent nothing at all."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        stop = threading.Event()

        def hang_up() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    conn, _ = listener.accept()
                    conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        try:
            cfg = lane_config(tmp_path / "lane", central_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
                              printer="none", port=free_port(), secret="x")
            _, report = doctor(cfg)
        finally:
            stop.set()
    assert one(report, "central.tcp")["result"] == "ok"
    assert (one(report, "central.signature")["result"], one(report, "central.signature")["code"]) == \
        ("fail", "signature_error")
    clock = one(report, "central.clock")
    assert clock["result"] == "skip" and "Date" not in clock["message"]


def test_a_clock_skew_is_named_with_its_size(tmp_path):
    with running_central(tmp_path / "central", demo_seed(), clock=lambda: time.time() + 900) as skewed:
        cfg = lane_config(tmp_path / "lane", central_url=skewed.url, printer="none", port=free_port(),
                          secret="hex:" + skewed.store.store_secret("S001").hex())
        code, report = doctor(cfg)
    assert code == 1
    clock = one(report, "central.clock")
    assert (clock["result"], clock["code"]) == ("fail", "clock_skew")
    assert 890 <= clock["details"]["skew"] <= 910 and "timedatectl" in clock["message"]
    # central's Date is ahead, so the lane is behind (in the lane's Polish: its clock is late)
    assert "spóźnia się o" in clock["message"] and clock["details"]["apart"] == clock["details"]["skew"], clock
    signature = one(report, "central.signature")
    assert (signature["result"], signature["code"]) == ("fail", "signature_refused")
    assert signature["details"]["status"] == 401


def test_a_wrong_secret_is_a_refused_signature(tmp_path, central):
    cfg = lane_config(tmp_path / "lane", central_url=central.url, printer="none", port=free_port(), secret="wrong")
    code, report = doctor(cfg)
    assert code == 1 and one(report, "central.signature")["code"] == "signature_refused"
    assert one(report, "central.clock")["result"] == "ok"


def test_sync_stopped_for_good_by_a_restored_ledger_is_a_failure(tmp_path, central, start_lane):
    """Health stays amber (sales are still recorded) but nothing reaches central until a person acts:
    doctor says so as a failure and exits 1."""
    lane = start_lane(tmp_path / "lane")
    assert lane.post("/v1/transactions", sale_body("T-old-1")).status_code == 200
    lane.wait_drained()
    lane.stop()
    shutil.copytree(lane.state, tmp_path / "backup")  # the backup store IT will restore
    lane.start()
    for tid in ("T-new-1", "T-new-2"):
        assert lane.post("/v1/transactions", sale_body(tid)).status_code == 200
    lane.wait_drained()
    lane.stop()
    shutil.rmtree(lane.state)
    shutil.copytree(tmp_path / "backup", lane.state)
    lane.start()
    after = lane.post("/v1/transactions", sale_body("T-after-restore"))  # seq 2 again
    assert after.status_code == 200
    lane.wait_for(lambda: any(i["code"] == "identity_conflict" for i in lane.health()["issues"]),
                  what="identity_conflict in health")
    # central's watermark of L01 (seq 3, the lost ledger's) does not hide this ledger's seq 2 from the balance
    earned = after.json()["accrual"]["points"]["points"]
    member = after.json()["member_id"]
    lane.wait_for(lambda: central.store.member(member, "S001")["applied_seq"].get("L01") == 3, what="central at seq 3")
    lane.wait_for(lambda: lane.get(f"/v1/members/{member}").json()["balances"]["points"]["pending"] == earned,
                  what="the sale after the restore pending in the balance")
    code, report = doctor(lane.config, "--no-central")
    finding = one(report, "daemon.identity_conflict")
    assert code == 1 and finding["result"] == "fail", finding


def test_a_second_till_set_up_with_the_same_lane_id_is_named(tmp_path, central, start_lane):
    """A new till configured with the ids of one that already syncs (the shipped example's, left as
    they were) syncs as L01.2 on its own, as a lane whose ledger.db was lost does: only the log said
    so. Doctor names the identity it took, and why to check the lane id."""
    first = start_lane(tmp_path / "first")
    assert first.post("/v1/transactions", sale_body("T-first-1")).status_code == 200
    first.wait_drained()
    second = start_lane(tmp_path / "second")
    assert second.post("/v1/transactions", sale_body("T-second-1")).status_code == 200
    second.wait_drained()
    assert second.health()["sync"]["sync_lane_id"] == "L01.2"
    _, report = doctor(second.config, "--no-central", "--lang", "en")
    moved = one(report, "sync.identity")
    assert (moved["result"], moved["code"]) == ("warn", "identity_moved"), moved
    assert "L01.2" in moved["message"] and "lane.lane_id" in moved["message"]
    _, report = doctor(first.config, "--no-central")
    assert found(report, "sync.identity") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the folders as another user: needs root")
def test_a_storage_folder_posd_could_not_make_fails_and_one_it_could_is_a_warning(tmp_path):
    """doctor --user said of a storage folder not made yet "posd creates it at its first start", also
    where that user may not write in the folder above: posd run then stopped with a config error."""
    cfg = offline_config(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o755)
    cfg.write_text(cfg.read_text().replace('dir = "state"', f'dir = "{ro / "state"}"'))
    _, report = doctor(cfg, "--no-central", user="nobody")
    made = one(report, "storage.dir")
    assert (made["result"], made["code"]) == ("fail", "dir_unmakable"), made
    assert str(ro) in made["message"] and "nobody" in made["message"]
    _, report = doctor(cfg, "--no-central", user="root")
    assert (one(report, "storage.dir")["result"], one(report, "storage.dir")["code"]) == ("warn", "dir_missing")
    # a folder the unit has systemd make before it starts posd (StateDirectory=, as the package ships
    # /var/lib/posd): not posd's user's to make, and not a failure
    name = f"posd-doctor-{tmp_path.name}"
    unit = tmp_path / "posd.service"
    unit.write_text(UNIT.read_text().replace("StateDirectory=posd", f"StateDirectory={name}"))
    cfg.write_text(cfg.read_text().replace(f'dir = "{ro / "state"}"', f'dir = "/var/lib/{name}"'))
    _, report = doctor(cfg, "--no-central", "--unit", str(unit), user="nobody")  # the last --unit counts
    made = one(report, "storage.dir")
    assert (made["result"], made["code"]) == ("warn", "dir_missing"), made


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "disk") as mount:
        yield mount


def test_a_full_disk_is_named(tmp_path, small_disk):
    cfg = offline_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('dir = "state"', f'dir = "{small_disk}/state"\nmin_free_mb = 1'))
    (small_disk / "state").mkdir()
    code, report = doctor(cfg, "--no-central")
    assert one(report, "storage.disk")["result"] == "ok"
    fill(small_disk / "filler")  # as a runaway log would
    code, report = doctor(cfg, "--no-central")
    assert code == 1
    disk = one(report, "storage.disk")
    # full to its last block: said full (it said "nearly full" at 0 B), naming the disk
    assert (disk["result"], disk["code"]) == ("fail", "disk_full") and disk["details"]["free_bytes"] < 2**20
    assert "jest pełny" in disk["message"] and f"({small_disk})" in disk["message"], disk["message"]


def test_less_free_space_than_configured_is_named_by_doctor_and_health(tmp_path, central, start_lane):
    from posd.config import MAX_MIN_FREE_MB

    free_mb = shutil.disk_usage(tmp_path).free // 2**20
    if free_mb + 10_000 > MAX_MIN_FREE_MB:
        pytest.skip("more than 1 TiB free here: no minimum the config takes is above it")
    lane = start_lane(tmp_path / "lane", extra_config="")
    lane.stop()
    lane.config.write_text(lane.config.read_text().replace('dir = "state"',
                                                           f'dir = "state"\nmin_free_mb = {free_mb + 10_000}'))
    lane.start()
    lane.wait_for(lambda: any(i["code"] == "disk_low" for i in lane.health()["issues"]), what="disk_low")
    assert lane.health()["status"] == "degraded"
    code, report = doctor(lane.config)
    assert code == 1 and one(report, "storage.disk")["code"] == "disk_low"
    assert one(report, "daemon.disk_low")["result"] == "warn"
    lane.stop()


def test_a_corrupt_cache_and_a_corrupt_ledger_are_named(tmp_path):
    cfg = offline_config(tmp_path)
    state = cfg.parent / "state"
    state.mkdir()
    (state / "cache.db").write_bytes(b"garbage" * 1000)
    code, report = doctor(cfg, "--no-central")
    assert code == 1
    cache = one(report, "storage.cache")
    assert (cache["result"], cache["code"]) == ("fail", "cache_corrupt") and "systemctl restart posd" in cache["message"]
    assert one(report, "cache.members")["result"] == "skip"
    ledger = state / "ledger.db"
    ledger.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    before = ledger.read_bytes()
    code, report = doctor(cfg, "--no-central", "--lang", "fa")
    assert one(report, "storage.ledger")["code"] == "ledger_corrupt"
    assert "بررسی یکپارچگی" in one(report, "storage.ledger")["message"]
    assert ledger.read_bytes() == before  # doctor only reads


def test_a_storage_folder_the_kernel_refuses_fails(tmp_path):
    """storage.dir = "/proc/posd": the modes let root write in /proc, but nothing can be made there.
    Doctor said "created at first start"; posd run refuses it."""
    cfg = offline_config(tmp_path, storage_dir="/proc/posd")
    code, report = doctor(cfg, "--no-central", "--lang", "en")
    found = one(report, "storage.dir")
    assert code == 1 and (found["result"], found["code"]) == ("fail", "dir_refused"), found
    assert "/proc" in found["message"] and "storage.dir" in found["message"]


def _ledger_state(state: Path, how: str) -> None:
    """Leave in ``state`` a ledger posd run refuses for a reason other than its integrity."""
    import sqlite3

    from posd.storage.ledger import LaneIdentity, Ledger

    if how == "empty":
        (state / "ledger.db").write_bytes(b"")
    elif how == "not_file":  # a folder made by mistake: SQLite said "disk I/O error", posd run exited 1 (restarted)
        (state / "ledger.db").mkdir()
    elif how == "foreign":  # another database under the name: posd run used to migrate it into a ledger
        with contextlib.closing(sqlite3.connect(state / "ledger.db")) as conn, conn:
            conn.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, quantity INTEGER)")
            conn.execute("INSERT INTO stock VALUES ('5901234123457', 12)")
    elif how == "wal_orphan":
        (state / "ledger.db-wal").write_bytes(b"\x37\x7f\x06\x82" + os.urandom(4096))
    else:
        ledger = Ledger(state / "ledger.db", LaneIdentity("S001", "L09" if how == "other_lane" else "L01"))
        ledger.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}}))
        ledger.close()
        if how == "newer":
            with contextlib.closing(sqlite3.connect(state / "ledger.db")) as conn, conn:
                conn.execute("INSERT INTO _migrations VALUES ('m9999_from_a_newer_posd', '2030-01-01')")


@pytest.mark.parametrize("how, words", [("empty", "0 bytes"), ("wal_orphan", "ledger.db-wal"),
                                        ("other_lane", "L09"), ("newer", "m9999_from_a_newer_posd"),
                                        ("foreign", "stock"), ("not_file", "not a file")])
def test_a_ledger_posd_run_refuses_fails_doctor_too(tmp_path, how, words):
    """Doctor said ok (or "created at first start") for ledgers posd run then refused with exit 3: an
    empty file, a -wal without its ledger.db, another lane's history, a newer posd's migrations,
    another database under the name (posd run wrote its tables into it and took it for a new ledger).
    It asks the ledger's own checks now, read-only, and says what to do."""
    cfg = offline_config(tmp_path)
    state = cfg.parent / "state"
    state.mkdir()
    _ledger_state(state, how)
    def files() -> dict[str, bytes | None]:
        return {p.name: p.read_bytes() if p.is_file() else None for p in state.iterdir()}

    before = files()
    code, report = doctor(cfg, "--no-central", "--lang", "en")
    ledger = one(report, "storage.ledger")
    assert code == 1 and (ledger["result"], ledger["code"]) == ("fail", f"ledger_{how}"), ledger
    assert words in ledger["message"], ledger["message"]
    assert {name: files()[name] for name in before} == before  # doctor only reads
    code, report = doctor(cfg, "--no-central", "--lang", "fa")
    assert one(report, "storage.ledger")["code"] == f"ledger_{how}" and "posd" in one(report, "storage.ledger")["message"]
    run = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 3 and words in run.stderr, run.stderr
    assert {name: files()[name] for name in before} == before  # refused with nothing written


def _lane_with_storage(folder: Path) -> Path:
    """A config in ``folder`` and its storage as a daemon leaves it: ledger.db (WAL) and cache.db."""
    from posd.storage.cache import Cache
    from posd.storage.ledger import LaneIdentity, Ledger

    cfg = offline_config(folder)
    state = cfg.parent / "state"
    state.mkdir()
    ledger = Ledger(state / "ledger.db", LaneIdentity("S001", "L01"))
    ledger.write(lambda tx: tx.append_event("accrual", {"member_id": "M1", "points": {}}))
    ledger.close()
    Cache(state / "cache.db", "L01").close()
    for path in [cfg.parent, cfg.parent.parent, cfg]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return cfg


@needs_root
def test_storage_doctor_may_not_read_is_never_called_damaged(shared_tmp):
    """Doctor run by a user who may not read ledger.db (the storage folder root's, 0750; the files
    0600) said ledger.db failed its integrity check and to restore the last backup, which loses
    every sale since. It cannot know: it says it could not read the file, as whom, and what to do.
    A folder it cannot enter at all (0700) was a traceback."""
    cfg = _lane_with_storage(shared_tmp)
    state = cfg.parent / "state"
    shutil.chown(state, "root", "nogroup")
    for name, mode in (("", 0o750), ("ledger.db", 0o600), ("cache.db", 0o600)):
        (state / name).chmod(mode)
    for folder_mode in (0o750, 0o700):
        state.chmod(folder_mode)
        run = posd_as_nobody("doctor", "--config", str(cfg), "--json", "--no-central", "--user", "nobody",
                             "--lang", "en", "--unit", str(UNIT))
        assert "Traceback" not in run.stderr, run.stderr
        report = json.loads(run.stdout)
        for check, file in (("storage.ledger", "ledger.db"), ("storage.cache", "cache.db")):
            finding = one(report, check)
            assert (finding["result"], finding["code"]) == ("warn", "db_denied"), finding
            assert f"cannot read {file} as nobody: permission denied" in finding["message"], finding
            assert "run posd doctor as root or the posd user" in finding["message"]
        assert not [c for c in report["checks"] if c["code"] in ("ledger_corrupt", "cache_corrupt")]
        assert "restore" not in run.stdout and "rebuild" not in run.stdout
    token = one(report, "files.api.token_file")  # in the folder it could not enter: not "missing"
    assert (token["result"], token["code"]) == ("warn", "denied") and "as nobody" in token["message"], token

    # ledger.db readable, but the folder is not writable and SQLite cannot make its -shm: not damage either
    state.chmod(0o755)
    (state / "ledger.db").chmod(0o644)
    run = posd_as_nobody("doctor", "--config", str(cfg), "--json", "--no-central", "--user", "nobody",
                         "--unit", str(UNIT))
    ledger = one(json.loads(run.stdout), "storage.ledger")
    assert (ledger["result"], ledger["code"]) == ("warn", "db_denied"), ledger
    code, report = doctor(cfg, "--no-central")  # as root, the same files are sound
    assert one(report, "storage.ledger")["code"] == one(report, "storage.cache")["code"] == "db_ok"


@needs_root
def test_a_ledger_posd_run_cannot_write_fails_doctor(shared_tmp):
    """ledger.db restored as root into posd's folder (root:root 0644), or made immutable: its integrity
    check passes, and doctor said ok, but posd run refuses to start (exit 2, it cannot be opened for
    writing). Doctor names the file, who cannot write it and why."""
    cfg = _lane_with_storage(shared_tmp)
    state = cfg.parent / "state"
    shutil.chown(state, "nobody", "nogroup")
    shutil.chown(state / "cache.db", "nobody", "nogroup")
    code, report = doctor(cfg, "--no-central", "--lang", "en", user="nobody")
    assert one(report, "storage.dir")["code"] == "dir_ok" and one(report, "storage.cache")["code"] == "db_ok"
    ledger = one(report, "storage.ledger")
    assert code == 1 and (ledger["result"], ledger["code"]) == ("fail", "db_unwritable"), ledger
    assert "nobody cannot write to" in ledger["message"] and "ledger.db" in ledger["message"], ledger["message"]
    assert "owner root" in ledger["message"] and "0644" in ledger["message"], ledger["message"]
    run = posd_as_nobody("run", "--config", str(cfg))
    assert run.returncode == 2 and "ledger.db" in run.stderr, run.stderr  # what doctor foretold
    shutil.chown(state / "ledger.db", "nobody", "nogroup")
    assert one(doctor(cfg, "--no-central", user="nobody")[1], "storage.ledger")["code"] == "db_ok"
    subprocess.run(["chattr", "+i", str(state / "ledger.db")], check=True)
    try:
        code, report = doctor(cfg, "--no-central", "--lang", "en")  # as root: root cannot write it either
        ledger = one(report, "storage.ledger")
        assert code == 1 and ledger["code"] == "db_unwritable" and "chattr -i" in ledger["message"], ledger
    finally:
        subprocess.run(["chattr", "-i", str(state / "ledger.db")], check=True)


@needs_root
def test_a_storage_folder_on_a_read_only_mount_fails_and_says_why(tmp_path):
    """A storage folder bind-mounted read-only: its modes let root write, so doctor said "root may
    write there", then that it could not read ledger.db and to run doctor again."""
    cfg = _lane_with_storage(tmp_path)
    state = cfg.parent / "state"
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(state)], check=True)
        code, report = doctor(cfg, "--no-central", "--lang", "en")
    finally:
        subprocess.run(["umount", str(state)], check=True)
    folder = one(report, "storage.dir")
    assert code == 1 and (folder["result"], folder["code"]) == ("fail", "dir_frozen"), folder
    assert "read-only" in folder["message"], folder["message"]
    for check in ("storage.ledger", "storage.cache"):  # not their fault, and never "run doctor again"
        db = one(report, check)
        assert "doctor again" not in db["message"], db
        # no -wal beside it (closed cleanly): the file is read whole, checked, and unwritable for the mount's
        # reason (SQLite could not open it there at all before: "not checked")
        assert (db["result"], db["code"]) == ("fail", "db_unwritable") and "read-only" in db["message"], db


def test_a_storage_dir_that_is_a_file_is_named_so(tmp_path):
    cfg = offline_config(tmp_path)
    (cfg.parent / "state").write_text("not a folder")
    code, report = doctor(cfg, "--no-central", "--lang", "en")
    folder = one(report, "storage.dir")
    assert code == 1 and (folder["result"], folder["code"]) == ("fail", "dir_not_folder"), folder
    assert "is not a folder" in folder["message"], folder
    assert one(report, "storage.ledger")["code"] == one(report, "storage.cache")["code"] == "db_folder"


def test_a_config_posds_user_cannot_read_fails_and_an_inline_secret_others_read_warns(tmp_path):
    """A config root's alone (0600 in root's folder) passed doctor --user nobody, and posd run as nobody
    could not read it. A config holding the store secret inline that everyone may read went unsaid,
    where a store.secret file others may read is a warning."""
    cfg = offline_config(tmp_path)  # store_secret inline
    cfg.chmod(0o600)
    code, report = doctor(cfg, "--no-central", "--lang", "en", user="nobody")
    access = one(report, "config.access")
    assert code == 1 and (access["result"], access["code"]) == ("fail", "unreadable_by"), access
    assert "nobody cannot read" in access["message"], access["message"]
    cfg.chmod(0o644)
    _, report = doctor(cfg, "--no-central", "--lang", "en")
    access = one(report, "config.access")
    assert (access["result"], access["code"]) == ("warn", "secret_readable"), access
    assert f"chmod 640 {cfg}" in access["message"], access["message"]
    cfg.chmod(0o640)
    assert not found(doctor(cfg, "--no-central")[1], "config.access")


def test_an_api_token_file_removed_while_posd_runs_is_a_warning(tmp_path, central, start_lane):
    """Doctor said "does not exist yet: posd creates it at its first start" of the token file of a
    running posd: the POS can no longer read the token posd still takes."""
    lane = start_lane(tmp_path / "lane")
    (lane.state / "api.token").unlink()
    code, report = doctor(lane.config, "--lang", "en")
    token = one(report, "files.api.token_file")
    assert (token["result"], token["code"]) == ("warn", "gone"), token
    assert "restart posd" in token["message"], token["message"]


def test_a_preview_printer_whose_folder_is_a_file_fails(tmp_path):
    """preview:// names the folder slips are kept in. A regular file there passed doctor ("slips are
    kept as files in ..."), and `posd run` then could not create the folder: the printer went to
    error. Also when the file is a folder further up."""
    (tmp_path / "afile").write_text("")
    for url, file in ((f"preview://{tmp_path / 'afile'}", tmp_path / "afile"),
                      (f"preview://{tmp_path / 'afile' / 'slips'}", tmp_path / "afile")):
        cfg = offline_config(tmp_path, printer=url)
        code, report = doctor(cfg, "--no-central", "--lang", "en")
        finding = one(report, "devices.printer")
        assert code == 1 and (finding["result"], finding["code"]) == ("fail", "preview_not_folder"), finding
        assert f"{file} is a file, not a folder" in finding["message"], finding
    # file:// writes to a file, a FIFO or a device: a folder there was "ok", and the printer went red at start
    cfg = offline_config(tmp_path, printer=f"file://{tmp_path}")
    code, report = doctor(cfg, "--no-central", "--lang", "en")
    finding = one(report, "devices.printer")
    assert code == 1 and (finding["result"], finding["code"]) == ("fail", "file_is_folder"), finding
    assert f"{tmp_path} is a folder" in finding["message"], finding


def test_a_finding_of_several_lines_stays_in_its_column(tmp_path):
    """SQLite's integrity report is several lines: the table keeps each under the finding column."""
    from posd.storage.ledger import LaneIdentity, Ledger

    cfg = offline_config(tmp_path)
    state = cfg.parent / "state"
    state.mkdir()
    ledger = Ledger(state / "ledger.db", LaneIdentity("S001", "L01"))
    ledger.write(lambda tx: [tx.append_event("accrual", {"member_id": f"M{i}", "points": {}, "pad": "x" * 900})
                             for i in range(200)])
    ledger.close()
    data = bytearray((state / "ledger.db").read_bytes())
    for page in (4, 9, 14):
        data[page * 4096 + 8:page * 4096 + 600] = os.urandom(592)  # cells, not headers: a report of many lines
    (state / "ledger.db").write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(cfg), "--user", ME,
                           "--unit", str(UNIT), "--no-central"], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "ledger.db" in line and "***" in line)  # the report's first line
    column = lines[at].index("ledger.db")
    follow = lines[at + 1]
    assert follow[:column].strip() == "" and follow[column] != " ", proc.stdout  # under the finding, not the area


def test_a_printer_out_of_paper_is_named_by_its_own_status(tmp_path, central, printer):
    printer.state = "paper_out"
    cfg = lane_config(tmp_path / "lane", central_url=central.url, printer=printer.url, port=free_port(),
                      secret="hex:" + central.store.store_secret("S001").hex())
    code, report = doctor(cfg, "--lang", "en")
    status = one(report, "devices.printer.status")
    assert (status["result"], status["code"], status["details"]["code"]) == ("fail", "printer_problem", "paper_out")
    assert "out of paper" in status["message"]
    printer.power_off()
    code, report = doctor(cfg, "--lang", "en")
    assert one(report, "devices.printer.status")["code"] == "printer_unreachable"


def test_every_config_mistake_is_listed_and_the_rest_is_not_guessed(tmp_path):
    cfg = offline_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('locale = "pl"', 'locale = "fa"\ncolour = "red"')
                   .replace('profile = "TM-T88V"', 'profile = "TM-T88V"\nwidth_mm = 70'))
    proc = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(cfg), "--user", ME],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "lane.colour" in proc.stdout and "printer.width_mm" in proc.stdout
    assert "پیکربندی" in proc.stdout  # the lane's language, read from the file that does not validate
    code, report = doctor(cfg)
    assert [c["details"]["config_key"] for c in found(report, "config")] == ["lane.colour", "printer.width_mm"]
    assert {c["result"] for c in report["checks"] if c["area"] not in ("config", "unit")} == {"skip"}
    # the mistakes themselves in that language too, not only their frame ("unknown key", "Input should be ...")
    assert "کلید ناشناخته" in proc.stdout and "مقدارهای مجاز" in proc.stdout and "unknown key" not in proc.stdout
    polish = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(cfg), "--user", ME, "--lang", "pl"],
                            capture_output=True, text=True, timeout=120).stdout
    assert "nieznany klucz" in polish and "dozwolone wartości" in polish and "unknown key" not in polish, polish


@pytest.mark.parametrize("contents", [
    b'[lane]\nstore_id = "S\xff"\n',  # not UTF-8
    b"#" * (1024 * 1024 + 1),  # larger than 1 MiB
    b"[lane]\nstore_id = [\n",  # TOML that ends early: no line to name
])
def test_a_config_mistake_of_the_whole_file_is_said_as_config_check_says_it(tmp_path, contents):
    """Not Python's "'utf-8' codec can't decode byte 0xff in position 20", and no "-:" where there is no
    key or line to name."""
    cfg = tmp_path / "posd.toml"
    cfg.write_bytes(contents)
    check = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(cfg)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 2
    said = check.stderr.strip().split(": config error: ", 1)[1]
    code, report = doctor(cfg)
    assert code == 1
    finding = one(report, "config")
    assert finding["result"] == "fail" and finding["message"] == said, (finding, said)
    assert finding["details"]["config_key"] is None and finding["details"]["line"] is None
    proc = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(cfg), "--user", ME, "--lang", "pl",
                           "--unit", str(UNIT)], capture_output=True, text=True, timeout=120)
    row = next(line for line in proc.stdout.splitlines() if said in line)
    assert row.rstrip().endswith(said) and "-:" not in row, row


def test_the_table_speaks_the_lanes_language(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane", locale="fa")
    proc = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(lane.config), "--user", ME,
                           "--unit", str(UNIT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "posd doctor:" in proc.stdout and "مرکز درخواست امضاشدهٔ صندوق را پذیرفت" in proc.stdout
    assert "مشکلی پیدا نشد" in proc.stdout.splitlines()[-1]


def test_persian_findings_write_every_figure_in_persian_digits(tmp_path, central, start_lane):
    """Counts, days, seconds, sizes, line numbers and the summary: Persian digits for fa, never a mix
    (identifiers such as a port, a version or a path keep theirs)."""
    lane = start_lane(tmp_path / "lane", locale="fa")
    for n in range(5):
        assert lane.post("/v1/transactions", sale_body(f"T-fa{n}")).status_code == 200
    proc = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(lane.config), "--user", ME,
                           "--unit", str(UNIT)], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    code, report = doctor(lane.config)
    assert report["locale"] == "fa"
    checked = ["sync.outbox", "storage.ledger", "storage.growth", "central.clock"]
    for check in checked:
        message = one(report, check)["message"]
        assert not any(c in "0123456789" for c in message), (check, message)
        assert any(c in "۰۱۲۳۴۵۶۷۸۹" for c in message), (check, message)
    summary = proc.stdout.strip().splitlines()[-1]
    assert not any(c in "0123456789" for c in summary) and any(c in "۰۱۲۳۴۵۶۷۸۹" for c in summary), summary
    growth = one(report, "storage.growth")
    assert "۵ رویداد" in growth["message"]  # the five sales of the last few seconds
    # a ledger a minute old: its five events are a day's growth (at least a day), not a week's
    assert growth["details"]["window_s"] == 86400, growth
    # from the pages its rows fill, not the file: a young ledger's is mostly empty tables and its -wal
    assert growth["details"]["bytes_per_day"] <= 5 * 16 * 1024, growth  # a sale writes about 10 KB
    tcp = one(report, "central.tcp")["message"]
    assert f":{central.url.rsplit(':', 1)[1]}" in tcp  # the port as typed, beside the time in Persian digits

    lane.stop()
    cfg = lane.config
    cfg.write_text(cfg.read_text().replace('locale = "fa"', 'locale = "fa"\ncolour = "red"'))
    code, report = doctor(cfg)
    [mistake] = found(report, "config")
    line = mistake["details"]["line"]
    digits = str(line).translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    assert code == 1 and f"lane.colour (خط {digits})" in mistake["message"], mistake["message"]


def test_persian_figures_use_persian_digits_and_separators(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane", locale="fa")
    code, report = doctor(lane.config, "--lang", "fa")
    assert code == 0, report
    tcp = one(report, "central.tcp")
    host_port = f"{tcp['details']['host']}:{tcp['details']['port']}"
    assert host_port in tcp["message"]  # an address stays as written
    figures = tcp["message"].replace(host_port, "")
    assert not re.search(r"[0-9]", figures) and re.search(r"[۰-۹]", figures), tcp["message"]
    from posd.doctor import Finding  # a count in the thousands: grouped as CLDR's fa writes it
    finding = Finding("sync", "sync", "ok", "backlog", {"pending": 2601, "age": "-"})
    assert "۲٬۶۰۱" in finding.text("fa") and "2,601" in finding.text("en")


@needs_root
def test_a_config_this_user_may_not_read_says_as_whom(shared_tmp):
    """Doctor run by a user who may not read posd.toml (root's, 0600) said "Permission denied" and
    then that the config was not valid; config check did not say as whom either."""
    cfg = offline_config(shared_tmp)
    cfg.chmod(0o600)
    run = posd_as_nobody("doctor", "--config", str(cfg), "--json", "--no-central", "--lang", "en")
    report = json.loads(run.stdout)
    found = one(report, "config")
    assert run.returncode == 1 and (found["result"], found["code"]) == ("fail", "denied"), found
    assert "as nobody" in found["message"] and "root or the posd user" in found["message"], found
    skipped = [c for c in report["checks"] if c["result"] == "skip" and c["area"] != "unit"]
    assert skipped and all("could not be read" in c["message"] for c in skipped), skipped
    checked = posd_as_nobody("config", "check", str(cfg))
    assert checked.returncode == 2 and f"cannot read {cfg} as nobody: permission denied" in checked.stderr, \
        checked.stderr


@pytest.mark.parametrize("locale, says", [("en", "ready, paper running low"), ("pl", "gotowa, kończy się papier"),
                                          ("fa", "آماده، کاغذ رو به اتمام")])
def test_a_printer_near_the_end_of_its_paper_is_said_so_in_every_language(locale, says):
    """The line read "ready, running low": running low of what, store IT had to guess."""
    from posd.core.messages import message
    assert says in message(locale, "doctor.devices.printer_ready", name="printer",
                           paper=message(locale, "paper.near_end"))

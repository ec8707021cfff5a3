"""The Debian package, installed as store IT installs it, in clean Debian roots.

`make test-install` builds dist/posd_<version>_<arch>.deb and runs this file;
without POSD_DEB naming a package, the fixture builds one (scripts/build-deb).

A lane PC: `debootstrap --variant=minbase bookworm` plus systemd, booted with
systemd-nspawn so that systemd 252 itself runs posd under the hardened unit
(PID 1 here is not systemd). posd is installed with apt, checked, configured
against the reference central running on the host's loopback, started with
systemctl, sold to, scanned at (a camera clip: OpenCV, zxing-cpp, pyzbar), its
Persian slip rendered (Pillow's raqm), upgraded to the next version, removed
and purged. A second root without systemd checks postinst's adduser fallback.

Everything stays under pytest's tmp dirs; debootstrap's downloaded packages
are kept in .cache/install-test (gitignored) to make the next run quicker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.central_fixture import SECRET_TEXT, running_central
from tests.support.clips import code_image, scene, write_clip
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.install]

ROOT = Path(__file__).parent.parent
CACHE = ROOT / ".cache" / "install-test"
MIRROR = os.environ.get("POSD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
MEMBER_CARD = "2900000000018"  # Anna K. in the reference central's test seed
WAIT = 120  # seconds for any one thing to happen on a shared 2-core machine


@pytest.fixture(scope="module")
def deb() -> Path:
    given = os.environ.get("POSD_DEB")
    if given:
        return Path(given).resolve()
    subprocess.run([str(ROOT / "scripts" / "build-deb")], cwd=ROOT, check=True, timeout=3600)
    return max((ROOT / "dist").glob("posd_*.deb"), key=lambda p: p.stat().st_mtime)


def debootstrap(target: Path, include: tuple[str, ...] = ()) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd = ["debootstrap", "--variant=minbase", f"--cache-dir={CACHE}"]
    if include:
        cmd.append("--include=" + ",".join(include))
    run = subprocess.run([*cmd, "bookworm", str(target), MIRROR], capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def next_version(deb: Path, out_dir: Path) -> tuple[Path, str]:
    """The same package as the next version (0.2.0 -> 0.2.0+1): an upgrade runs
    the maintainer scripts, conffile handling and restart exactly as a real one."""
    tree = out_dir / "next"
    subprocess.run(["dpkg-deb", "--raw-extract", str(deb), str(tree)], check=True, timeout=600)
    control = tree / "DEBIAN" / "control"
    lines = control.read_text().splitlines()
    version = next(line.split(": ", 1)[1] for line in lines if line.startswith("Version: ")) + "+1"
    control.write_text("\n".join(f"Version: {version}" if line.startswith("Version: ") else line
                                 for line in lines) + "\n")
    out = out_dir / f"posd_{version}.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--build", "--root-owner-group", str(tree), str(out)],
                   check=True, capture_output=True, timeout=1200)
    shutil.rmtree(tree)
    return out, version


class BootedRoot:
    """A Debian root booted with systemd-nspawn; commands run inside it with nsenter.

    The container shares the host's network, so posd's API and the reference
    central meet on 127.0.0.1.
    """

    def __init__(self, root: Path, log: Path):
        self.root = root
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--directory", str(root), "--boot", "--register=no",
             "--keep-unit", "--console=read-only"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.init_pid = self._find_init()
        deadline = time.monotonic() + WAIT
        while True:  # systemctl fails until systemd has opened its socket; --wait covers the rest
            run = self.sh("systemctl is-system-running --wait", check=False)
            state = run.stdout.strip()
            if state in ("running", "degraded") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert state in ("running", "degraded"), \
            f"the root did not boot: {state!r} {run.stderr[-500:]}\n{log.read_text()[-3000:]}"

    def _find_init(self) -> int:
        """The container's PID 1 once it runs systemd. nspawn's first child (its
        outer child) is in the host's PID namespace and exits; the inner one is
        in the container's but still nspawn until it execs init. Entering either
        enters the wrong root or nothing."""
        host_ns = os.readlink("/proc/self/ns/pid")
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "systemd-nspawn exited"
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        status = (entry / "status").read_text()
                        pid_ns = os.readlink(entry / "ns" / "pid")
                    except OSError:
                        continue
                    if (f"\nPPid:\t{self.proc.pid}\n" in status and status.startswith("Name:\tsystemd\n")
                            and pid_ns != host_ns):
                        return int(entry.name)
            time.sleep(0.1)
        raise AssertionError("the container's init did not start")

    def sh(self, script: str, *, check: bool = True, env: dict[str, str] | None = None,
           timeout: float = 900) -> subprocess.CompletedProcess[str]:
        cmd = ["nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-p", "-r", "-w",
               "env", "-i", *(f"{k}={v}" for k, v in {**ENV, **(env or {})}.items()), "sh", "-c", script]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check:
            assert run.returncode == 0, f"{script}\n-> {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
        return run

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn powers the container off cleanly
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=WAIT)
        self._log.close()


def unmount_below(path: Path) -> None:
    """Whatever is still mounted under PATH (a killed run), deepest first."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(path) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False)


@pytest.fixture(scope="module")
def lane_pc(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedRoot]:
    """A lane PC with posd installed by apt, the store secret given in a file."""
    base = tmp_path_factory.mktemp("lane-pc")
    root = base / "root"
    debootstrap(root, include=("systemd", "systemd-sysv", "dbus"))
    shutil.copy(deb, root / "root" / deb.name)
    (root / "root" / "store.secret").write_text(SECRET_TEXT + "\n")
    booted = BootedRoot(root, base / "boot.log")
    try:
        booted.sh("apt-get update -qq")
        booted.install = booted.sh(f"apt-get install -y -q --no-install-recommends /root/{deb.name}",
                                   env={"POSD_STORE_SECRET_FILE": "/root/store.secret"})
        yield booted
    finally:
        booted.stop()
        unmount_below(root)
        shutil.rmtree(base, ignore_errors=True)


def stat(lane: BootedRoot, path: str) -> str:
    return lane.sh(f"stat -c '%U:%G %a' {path}").stdout.strip()


def test_installs_files_user_and_secrets_where_store_it_expects_them(lane_pc, deb):
    lane = lane_pc
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert lane.sh("dpkg-query -W -f='${Status} ${Version}' posd").stdout == f"install ok installed {version}"
    said = lane.install.stdout + lane.install.stderr  # maintainer scripts speak on stderr (debconf owns stdout)
    assert "installed and enabled, not started" in said
    assert "store secret installed in /etc/posd/store.secret from /root/store.secret" in said

    files = ["/opt/posd/bin/posd", "/opt/posd/bin/python", "/lib/systemd/system/posd.service",
             "/usr/lib/sysusers.d/posd.conf", "/usr/lib/tmpfiles.d/posd.conf",
             "/lib/udev/rules.d/70-posd-devices.rules", "/usr/lib/modules-load.d/posd.conf",
             "/etc/modprobe.d/posd-blacklist-nfc.conf", "/etc/posd/posd.toml", "/usr/share/doc/posd/install.md"]
    for path in files:
        assert (lane.root / path.lstrip("/")).exists(), path
    assert os.readlink(lane.root / "usr/bin/posd") == "/opt/posd/bin/posd"
    assert os.readlink(lane.root / "opt/posd/bin/python3.11") == "/usr/bin/python3.11"
    conffiles = lane.sh("dpkg-query -W -f='${Conffiles}' posd").stdout
    assert "/etc/posd/posd.toml" in conffiles and "/etc/modprobe.d/posd-blacklist-nfc.conf" in conffiles
    assert (lane.root / "etc/posd/posd.toml").read_text() == (ROOT / "config/posd.example.toml").read_text()

    # runtime dependencies only, and nothing names the directory the venv was built in
    site = next((lane.root / "opt/posd/lib").glob("python3*/site-packages"))
    dists = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"posd", "fastapi", "evdev", "pyscard", "opencv_python_headless"} <= dists
    assert not dists & {"pytest", "hypothesis", "httpx"}
    assert lane.sh("grep -rlI -F /debian/posd/ /opt/posd", check=False).stdout == ""

    # the account: a system user with no login, in the device groups of the unit
    passwd = lane.sh("getent passwd posd").stdout.strip().split(":")
    assert int(passwd[2]) < 1000 and passwd[5] == "/var/lib/posd" and passwd[6].endswith("nologin")
    assert set(lane.sh("id -nG posd").stdout.split()) == {"posd", "dialout", "lp", "video"}

    assert stat(lane, "/var/lib/posd") == "posd:posd 750"
    assert stat(lane, "/var/cache/posd") == "posd:posd 750"
    assert stat(lane, "/var/backups/posd") == "root:root 700"  # docs/install.md's backup line works at once
    assert stat(lane, "/var/lib/posd/api.token") == "posd:posd 600"
    assert len(lane.sh("cat /var/lib/posd/api.token").stdout.strip()) >= 40
    assert stat(lane, "/etc/posd/store.secret") == "posd:posd 600"
    assert lane.sh("cat /etc/posd/store.secret").stdout == SECRET_TEXT  # first line, no newline
    assert stat(lane, "/etc/posd/posd.toml") == "root:posd 640"

    assert lane.sh("systemctl is-enabled posd").stdout.strip() == "enabled"
    assert lane.sh("systemctl is-active posd", check=False).stdout.strip() == "inactive"


def test_installed_posd_answers_and_its_unit_verifies(lane_pc, deb):
    lane = lane_pc
    upstream = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert lane.sh("runuser -u posd -- posd --version").stdout.strip() == f"posd {upstream}"
    check = lane.sh("runuser -u posd -- posd config check /etc/posd/posd.toml")
    assert check.stdout.startswith("/etc/posd/posd.toml: ok")
    verify = lane.sh("systemd-analyze verify posd.service 2>&1")
    assert verify.stdout.strip() == ""
    score = lane.sh("systemd-analyze security --no-pager --threshold=15 posd.service | tail -n 1").stdout
    assert "Overall exposure level for posd.service" in score, score


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LANE_CONFIG = """\
[lane]
store_id = "S001"
lane_id = "L01"
locale = "fa"
currency = "PLN"
timezone = "Asia/Tehran"

[api]
listen = "127.0.0.1:{api_port}"
token_file = "/var/lib/posd/api.token"

[storage]
dir = "/var/lib/posd"

[central]
url = "{central}"
store_secret_file = "/etc/posd/store.secret"
push_interval_s = 0.2
pull_interval_s = 1.0

[[scanner]]
name = "camera"
url = "camera+file:///var/lib/posd/member-card.avi?loop=1&debounce_ms=1000"

[[card_reader]]
name = "nfc"
url = "nfc+pcsc://"

[printer]
url = "preview:///var/lib/posd/slips"
profile = "TM-T88V"
width_mm = 80
"""


def member_card_clip(path: Path) -> None:
    """The member's card held up to the camera for half a second, every three seconds."""
    card = scene(code_image("EAN13", MEMBER_CARD, 3), (640, 360), at=(60, 60))
    write_clip(path, [card] * 5 + [np.full((360, 640), 150, np.uint8)] * 25, fps=10.0)


def sse_events(url: str, token: str, wanted: set[str], timeout: float = WAIT) -> dict[str, dict]:
    """The first event of each wanted type on the stream (bounded by TIMEOUT)."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    kind = None
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}"},
                      timeout=httpx.Timeout(10.0, read=timeout)) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind in wanted:
                seen.setdefault(kind, json.loads(line[6:]))
            if wanted <= seen.keys() or time.monotonic() > deadline:
                break
    return seen


def sale(api: str, token: str, transaction_id: str) -> httpx.Response:
    body = {"transaction_id": transaction_id, "member": MEMBER_CARD, "occurred_at": "2026-03-01T10:00:00+00:00",
            "currency": "PLN", "total": 12999,
            "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1, "unit_price": 12999}]}
    return httpx.post(f"{api}/v1/transactions", json=body, headers={"Authorization": f"Bearer {token}"},
                      timeout=30)


def test_runs_under_the_hardened_unit_and_keeps_its_ledger_across_an_upgrade(lane_pc, deb, tmp_path):
    lane = lane_pc
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    with running_central(tmp_path / "central") as central:
        (lane.root / "etc/posd/posd.toml").write_text(
            LANE_CONFIG.format(api_port=api_port, central=f"http://127.0.0.1:{central.port}"))
        clip = lane.root / "var/lib/posd/member-card.avi"
        member_card_clip(clip)
        clip.chmod(0o644)
        lane.sh("runuser -u posd -- posd config check /etc/posd/posd.toml")

        lane.sh("systemctl start posd")  # Type=notify: returns once posd said READY=1
        token = lane.sh("cat /var/lib/posd/api.token").stdout.strip()
        main_pid = lane.sh("systemctl show -p MainPID --value posd").stdout.strip()
        status = lane.sh(f"cat /proc/{main_pid}/status").stdout
        # the sandbox is really on: seccomp filters (SystemCallFilter=, MemoryDenyWriteExecute=, ...),
        # no capabilities, no new privileges, the unit's groups
        assert "\nSeccomp:\t2\n" in status and "\nNoNewPrivs:\t1\n" in status
        assert "\nCapEff:\t0000000000000000\n" in status
        groups = {lane.sh(f"getent group {g} | cut -d: -f3").stdout.strip() for g in ("dialout", "lp", "video")}
        assert groups <= set(status.split("\nGroups:\t")[1].split("\n")[0].split())

        # the member card, read by the camera (OpenCV, zxing-cpp) and identified from
        # the members pulled from central
        wait_until(lambda: httpx.get(f"{api}/v1/health", timeout=10).json()["cache"]["members"] >= 1,
                   WAIT, "members pulled from central", interval=0.5)
        seen = sse_events(f"{api}/v1/events", token, {"scan", "member.identified"})
        assert seen.get("scan", {}).get("data") == MEMBER_CARD, seen
        assert seen.get("member.identified"), seen

        first = sale(api, token, "install-test-1")
        assert first.status_code == 200, first.text
        # pushed to central through the unit's network restrictions, signed with the store secret
        wait_until(lambda: central.store.events("S001", "L01"), WAIT, "the accrual at central", interval=0.5)
        # the slip, Persian, drawn as raster (Pillow's raqm) under MemoryDenyWriteExecute=
        png = wait_until(lambda: list((lane.root / "var/lib/posd/slips").glob("*.png")), WAIT, "the slip preview",
                         interval=0.5)
        assert png[0].read_bytes().startswith(b"\x89PNG")

        health = httpx.get(f"{api}/v1/health", timeout=10).json()
        devices = {d["name"]: d for d in health["devices"]}
        assert devices["nfc"]["state"] == "error" and devices["nfc"]["reason"] == "service_unavailable"
        assert lane.sh("systemctl show -p NRestarts --value posd").stdout.strip() == "0"
        journal = lane.sh("journalctl -u posd --no-pager -o cat").stdout
        assert "Traceback" not in journal and "Permission denied" not in journal, journal[-3000:]

        # the next version: stopped before its files are replaced, started again after,
        # the ledger, token, secret and the edited posd.toml kept
        upgrade, version = next_version(deb, tmp_path)
        shutil.copy(upgrade, lane.root / "root" / upgrade.name)
        lane.sh(f"apt-get install -y -q --no-install-recommends /root/{upgrade.name}")
        assert lane.sh("dpkg-query -W -f='${Version}' posd").stdout == version
        assert lane.sh("systemctl is-active posd").stdout.strip() == "active"
        assert lane.sh("systemctl show -p MainPID --value posd").stdout.strip() != main_pid
        assert lane.sh("cat /var/lib/posd/api.token").stdout.strip() == token
        assert lane.sh("cat /etc/posd/store.secret").stdout == SECRET_TEXT
        assert f"127.0.0.1:{api_port}" in (lane.root / "etc/posd/posd.toml").read_text()
        wait_until(lambda: _answers(f"{api}/v1/health"), WAIT, "the API after the upgrade", interval=0.5)
        again = sale(api, token, "install-test-1")
        assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true", again.text
        assert again.json() == first.json()
        lane.sh("systemctl stop posd")
        assert len(central.store.events("S001", "L01")) == 1


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_remove_stops_it_and_purge_keeps_the_ledger(lane_pc):
    lane = lane_pc
    lane.sh("systemctl start posd")
    lane.sh("apt-get remove -y -q posd")
    assert lane.sh("systemctl is-active posd", check=False).stdout.strip() in ("inactive", "unknown")
    assert not (lane.root / "opt/posd/bin/posd").exists()
    assert (lane.root / "etc/posd/posd.toml").exists()  # remove keeps the configuration
    purge = lane.sh("apt-get purge -y -q posd")
    assert "kept /var/lib/posd" in purge.stdout + purge.stderr
    assert not (lane.root / "etc/posd").exists()
    assert not (lane.root / "var/cache/posd").exists()
    assert (lane.root / "var/lib/posd/ledger.db").stat().st_size > 0  # the lane's history survives purge
    assert not (lane.root / "etc/systemd/system/multi-user.target.wants/posd.service").exists()
    assert lane.sh("getent passwd posd").returncode == 0  # Debian keeps system users


def test_without_systemd_postinst_creates_the_account_with_adduser(deb, tmp_path):
    """A minimal root with no systemd (a container image): the account, directories,
    token and secret still come out right; the secret is preseeded through debconf."""
    root = tmp_path / "root"
    debootstrap(root)
    shutil.copy(deb, root / "root" / deb.name)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        def chroot(script: str, **env: str) -> subprocess.CompletedProcess[str]:
            run = subprocess.run(["chroot", str(root), "env", "-i", *(f"{k}={v}" for k, v in {**ENV, **env}.items()),
                                  "sh", "-c", script], capture_output=True, text=True, timeout=900)
            assert run.returncode == 0, f"{script}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
            return run.stdout

        chroot("apt-get update -qq && apt-get install -y -q debconf")
        chroot(f"echo 'posd posd/store_secret password {SECRET_TEXT}' | debconf-set-selections")
        chroot(f"apt-get install -y -q --no-install-recommends /root/{deb.name}")
        assert chroot("cat /etc/posd/store.secret") == SECRET_TEXT
        # used once, then gone from debconf's database
        assert SECRET_TEXT not in chroot("cat /var/cache/debconf/passwords.dat")
        assert chroot("command -v systemd-sysusers || echo none").strip() == "none"
        passwd = chroot("getent passwd posd").strip().split(":")
        assert int(passwd[2]) < 1000 and passwd[5] == "/var/lib/posd"
        assert set(chroot("id -nG posd").split()) == {"posd", "dialout", "lp", "video"}
        assert chroot("stat -c '%U:%G %a' /var/lib/posd /var/cache/posd /var/lib/posd/api.token "
                      "/etc/posd/store.secret").split("\n")[:4] == [
            "posd:posd 750", "posd:posd 750", "posd:posd 600", "posd:posd 600"]
        assert chroot("runuser -u posd -- posd config check /etc/posd/posd.toml").startswith("/etc/posd/posd.toml: ok")
    finally:
        subprocess.run(["umount", str(root / "proc")], check=False)
        unmount_below(root)

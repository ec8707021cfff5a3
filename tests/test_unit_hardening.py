"""The systemd unit: exposure <= 1.5, valid, every setting explained, and what it
forbids is something posd does not need.

The unit really runs posd in tests/test_install.py (a Debian root booted with
systemd); these checks are the fast ones, for every run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "posd.service"
INSTALL_MD = (ROOT / "docs" / "install.md").read_text()
MAX_EXPOSURE = 1.5

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze missing: scripts/bootstrap installs Debian's systemd")


def unit_settings(path: Path = UNIT) -> list[tuple[str, str, str]]:
    """(section, key, value) for every line; keys such as DeviceAllow= repeat."""
    out, section = [], ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(key: str) -> list[str]:
    return [v for _, k, v in unit_settings() if k == key]


def test_exposure_is_at_most_1_5():
    run = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                          f"--threshold={int(MAX_EXPOSURE * 10)}", str(UNIT)],
                         capture_output=True, text=True, timeout=120)
    overall = re.search(r"Overall exposure level for posd\.service: (\d+\.\d)", run.stdout)
    assert overall, run.stdout + run.stderr
    assert float(overall.group(1)) <= MAX_EXPOSURE, run.stdout
    # --threshold compares the unrounded score: 0 means it is within 1.5 before rounding too
    assert run.returncode == 0, run.stdout + run.stderr


def verify_in_root(root: Path, unit_text: str) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on the unit installed in ROOT as the package installs it.

    verify resolves ExecStart= and the units posd.service names inside --root: give
    it the host's own units and posd's entry point where the package puts it.
    """
    shutil.copytree(Path("/usr/lib/systemd/system"), root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/posd.service").write_text(unit_text)
    entry = root / "opt/posd/bin/posd"
    entry.parent.mkdir(parents=True)
    shutil.copy(Path(sys.executable).parent / "posd", entry)
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "posd.service"],
                          capture_output=True, text=True, timeout=120)


def test_unit_passes_systemd_analyze_verify(tmp_path):
    exec_start = values("ExecStart")[0].split()[0]
    assert exec_start == "/opt/posd/bin/posd"
    run = verify_in_root(tmp_path, UNIT.read_text())
    # verify exits 0 on "Unknown key ..., ignoring": any output is a finding
    assert run.returncode == 0 and not (run.stdout + run.stderr).strip(), run.stdout + run.stderr


def test_a_typo_in_the_unit_fails_verify(tmp_path):
    """The check above can fail: a misspelt setting is reported."""
    run = verify_in_root(tmp_path, UNIT.read_text().replace("ProtectClock=yes", "ProtectClok=yes"))
    assert "ProtectClok" in run.stdout + run.stderr


def test_every_service_setting_is_explained_in_install_md():
    keys = {k for section, k, _ in unit_settings() if section == "Service"}
    missing = sorted(k for k in keys if f"`{k}=" not in INSTALL_MD)
    assert not missing, f"docs/install.md does not explain: {missing}"


def test_groups_agree_between_unit_sysusers_and_postinst():
    unit_groups = set(values("SupplementaryGroups")[0].split())
    sysusers = (ROOT / "systemd" / "posd.sysusers.conf").read_text()
    assert set(re.findall(r"^m posd (\S+)", sysusers, re.M)) == unit_groups
    # postinst's adduser fallback, for systems without systemd-sysusers
    postinst = (ROOT / "debian" / "posd.postinst").read_text()
    fallback = re.search(r"for group in ([\w ]+); do", postinst)
    assert fallback and set(fallback.group(1).split()) == unit_groups
    assert "input" not in unit_groups  # would open every keyboard, the cashier's too


def test_directories_agree_between_unit_tmpfiles_sysusers_and_config():
    tmpfiles = (ROOT / "systemd" / "posd.tmpfiles.conf").read_text()
    dirs = dict(re.findall(r"^d (\S+)\s+(\d+) posd posd", tmpfiles, re.M))
    assert dirs == {"/var/lib/posd": "0750", "/var/cache/posd": "0750"}
    # docs/install.md's backups: made once when missing, never reset at boot over store IT's choice
    assert not re.search(r"^[A-Za-z]\S* +/var/backups", tmpfiles, re.M)
    postinst = (ROOT / "debian" / "posd.postinst").read_text()
    assert "[ -d /var/backups/posd ] || install -d -m 0700 -o root -g root /var/backups/posd" in postinst
    assert values("StateDirectory") == ["posd"] and values("StateDirectoryMode") == ["0750"]
    assert values("CacheDirectory") == ["posd"] and values("CacheDirectoryMode") == ["0750"]
    sysusers = (ROOT / "systemd" / "posd.sysusers.conf").read_text()
    assert re.search(r'^u posd - ".*" /var/lib/posd$', sysusers, re.M)
    # the shipped /etc/posd/posd.toml keeps everything it writes in the StateDirectory
    from posd.config import load, resolve

    config = load(ROOT / "config" / "posd.example.toml")
    assert config.storage_dir == Path("/var/lib/posd")
    postinst = (ROOT / "debian" / "posd.postinst").read_text()
    assert resolve(config.storage_dir, config.api.token_file) == Path("/var/lib/posd/api.token")
    assert 'create_api_token' in postinst and 'STATE=/var/lib/posd' in postinst
    assert config.central.store_secret_file == "/etc/posd/store.secret"
    assert "SECRET=/etc/posd/store.secret" in postinst


# Device classes whose driver is a loadable module: /proc/devices lists them only
# once it is loaded, and DeviceAllow= resolves names when the service starts.
MODULE_OF_CLASS = {"ttyUSB": "usbserial", "ttyACM": "cdc_acm", "video4linux": "videodev"}


def test_device_classes_cover_every_device_kind_and_their_modules_load_at_boot():
    allowed = dict(re.fullmatch(r"char-(\S+) (\w+)", v).groups() for v in values("DeviceAllow"))
    assert values("DevicePolicy") == ["closed"]
    # serial scanners and printers; /dev/bus/usb (pyusb); /dev/usb/lp*; parallel lp;
    # keyboard wedges (read only: posd never writes to an input device); cameras
    assert allowed == {"ttyS": "rw", "ttyUSB": "rw", "ttyACM": "rw", "usb_device": "rw", "usb": "rw",
                       "lp": "rw", "input": "r", "video4linux": "rw"}
    modules = (ROOT / "systemd" / "posd-modules.conf").read_text().split("\n")
    modules = {m.strip() for m in modules if m.strip() and not m.startswith("#")}
    assert {MODULE_OF_CLASS[c] for c in allowed if c in MODULE_OF_CLASS} == modules
    # postinst loads them at once, so the first start after installing has them too
    loaded = re.search(r"modprobe -q -a ([a-z_ ]+)", (ROOT / "debian" / "posd.postinst").read_text())
    assert loaded and set(loaded.group(1).split()) == modules


# Runs in a child process after prctl(PR_SET_MDWE): the kernel then refuses, for
# the rest of the process, any mapping that is writable and executable or that
# gains execute later -- what MemoryDenyWriteExecute=yes's seccomp filter refuses.
MDWE_PROBE = textwrap.dedent(r"""
    import ctypes, errno, mmap, sys
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_MDWE) failed: errno %d" % ctypes.get_errno())
    # the restriction is in force: a writable+executable anonymous mapping is refused
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    wx = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC,
                   mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert wx in (None, ctypes.c_void_p(-1).value), "W+X mapping was allowed: MDWE not in force"

    import numpy as np, cv2, zxingcpp
    from pyzbar import pyzbar
    from PIL import Image, ImageDraw, ImageFont, features
    code = zxingcpp.write_barcode_to_image(zxingcpp.create_barcode("2900000000018", zxingcpp.BarcodeFormat.EAN13), scale=3)
    frame = cv2.copyMakeBorder(np.array(code), 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255)
    frame = cv2.GaussianBlur(cv2.resize(frame, None, fx=1.5, fy=1.5), (3, 3), 0)
    assert [r.text for r in zxingcpp.read_barcodes(frame)] == ["2900000000018"]
    assert [r.data for r in pyzbar.decode(frame)] == [b"2900000000018"]
    ok, jpeg = cv2.imencode(".jpg", frame)
    assert ok and cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE).shape == frame.shape

    assert features.check("raqm"), "Pillow's raqm layout (libfribidi0) is missing"
    font = ImageFont.truetype(sys.argv[1], 28, layout_engine=ImageFont.Layout.RAQM)
    image = Image.new("1", (400, 60), 1)
    ImageDraw.Draw(image).text((390, 10), "امتیاز شما ۱۲۳", font=font, fill=0, anchor="ra", direction="rtl")
    assert image.getbbox() is not None

    # ctypes callbacks are libffi closures: the case MDWE breaks when libffi
    # has no static trampolines
    CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
    values = (ctypes.c_int * 5)(5, 1, 4, 2, 3)
    libc.qsort(values, 5, ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))
    assert list(values) == [1, 2, 3, 4, 5]

    import evdev, pyudev, serial, usb.core, usb.backend.libusb1
    from smartcard.System import readers
    from smartcard.pcsc.PCSCExceptions import EstablishContextException
    assert usb.backend.libusb1.get_backend() is not None
    list(usb.core.find(find_all=True))
    monitor = pyudev.Monitor.from_netlink(pyudev.Context())
    monitor.filter_by("tty")
    try:
        readers()
    except EstablishContextException:
        pass  # no pcscd here; the NFC driver reports that as service_unavailable

    import sqlite3, ssl
    conn = sqlite3.connect(":memory:")
    conn.execute("pragma journal_mode=wal")
    ssl.create_default_context()
    import posd.cli
    print("ok")
""")


def test_device_and_image_libraries_work_without_writable_executable_memory():
    """MemoryDenyWriteExecute=yes: everything posd loads keeps working: OpenCV, zxing-cpp,
    pyzbar, Pillow's raqm, pyscard, pyusb, pyudev, evdev, and libffi closures (ctypes
    callbacks here; cffi's callbacks are the same closures)."""
    font = ROOT / "posd" / "assets" / "fonts" / "Vazirmatn-Regular.ttf"
    run = subprocess.run([sys.executable, "-c", MDWE_PROBE, str(font)], capture_output=True, text=True,
                         timeout=300)
    if "prctl(PR_SET_MDWE) failed: errno 22" in run.stderr:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3); tests/test_install.py runs the unit itself")
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr


def _postinst_functions(*names: str) -> str:
    postinst = (ROOT / "debian" / "posd.postinst").read_text()
    return "\n".join(re.search(rf"^{name}\(\) {{\n.*?^}}\n", postinst, re.M | re.S).group(0) for name in names)


def test_the_install_script_never_leaves_the_store_secret_in_debconf(tmp_path):
    """A fleet tool preseeds the secret on every upgrade: with /etc/posd/store.secret already there (or
    POSD_STORE_SECRET_FILE given) the script returned before clearing it, and debconf kept it. A file
    given with an editor's byte-order mark installed the mark as part of the secret."""
    harness = tmp_path / "harness.sh"
    harness.write_text(textwrap.dedent(f"""\
        set -e
        SECRET={tmp_path}/store.secret
        db_get() {{ RET="PRESEEDED"; }}
        db_set() {{ echo "db_set $1 '$2'" >>{tmp_path}/debconf.log; }}
        chown() {{ :; }}
        """) + _postinst_functions("write_private", "install_store_secret") + textwrap.dedent(f"""
        install_store_secret 2>/dev/null                                 # a new lane: from debconf
        install_store_secret 2>/dev/null                                 # an upgrade, preseeded again
        rm "$SECRET"
        printf '\\357\\273\\277S3CRET\\r\\nsecond\\n' >{tmp_path}/given
        POSD_STORE_SECRET_FILE={tmp_path}/given install_store_secret 2>/dev/null
        """))
    subprocess.run(["bash", str(harness)], check=True, timeout=30)
    assert (tmp_path / "debconf.log").read_text().splitlines() == ["db_set posd/store_secret ''"] * 3
    assert (tmp_path / "store.secret").read_bytes() == b"S3CRET"

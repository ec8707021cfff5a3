"""`posd devices`: discovery over a fake /dev tree, pyserial's comports() faked, access per user."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import serial.tools.list_ports

from posd.cli import main
from posd.drivers import registry
from posd.drivers.discovery import _allowed, find_devices


@pytest.fixture
def dev(tmp_path):
    root = tmp_path / "dev"
    for folder in ("serial/by-id", "input/by-id", "v4l/by-id", "usb", "bus/usb/001"):
        (root / folder).mkdir(parents=True)
    for name in ("ttyACM0", "ttyUSB0", "ttyS0", "event3", "event4", "event5", "video0", "usb/lp0"):
        (root / name).write_bytes(b"")
        os.chmod(root / name, 0o660)
    (root / "bus/usb/001/004").write_bytes(b"")
    links = {
        "serial/by-id/usb-Honeywell_Imaging_1900-if00": "ttyACM0",
        "serial/by-id/usb-EPSON_TM-T88V_J7S0012345-if00": "ttyUSB0",
        "input/by-id/usb-Datalogic_QuickScan-event-kbd": "event3",
        "input/by-id/usb-MagTek_USB_Swipe_Reader-event-kbd": "event4",
        "input/by-id/usb-Logitech_Keyboard-event-kbd": "event5",
        "v4l/by-id/usb-Webcam_C920-video-index0": "video0",
    }
    for link, target in links.items():
        (root / link).symlink_to(root / target)
    return root


def comports(root):
    return lambda: [
        SimpleNamespace(device=str(root / "ttyACM0"), vid=0x0C2E, pid=0x0B61, manufacturer="Honeywell",
                        product="Imaging 1900", description="1900"),
        SimpleNamespace(device=str(root / "ttyUSB0"), vid=0x04B8, pid=0x0202, manufacturer="EPSON",
                        product="TM-T88V", description="TM-T88V"),
        SimpleNamespace(device=str(root / "ttyS0"), vid=None, pid=None, manufacturer=None, product=None,
                        description="ttyS0"),
    ]


def usb():
    return [SimpleNamespace(idVendor=0x04B8, idProduct=0x0E15, serial_number="X5KQ001234", bus=1, address=4,
                            manufacturer="EPSON", product="TM-T20II", bDeviceClass=0),
            SimpleNamespace(idVendor=0x046D, idProduct=0xC31C, serial_number=None, bus=1, address=2,
                            manufacturer="Logitech", product="Keyboard", bDeviceClass=0)]


def readers():
    return ["ACS ACR122U PICC Interface 00 00"]


def test_finds_every_kind_with_a_url_that_validates(dev):
    found = find_devices(dev_root=str(dev), user="root", comports=comports(dev), usb_devices=usb,
                         pcsc_readers=readers)
    by_url = {f.url: f for f in found}
    expected = {
        f"serial://{dev}/serial/by-id/usb-Honeywell_Imaging_1900-if00?baudrate=9600&suffix=CR": "scanner",
        f"serial://{dev}/serial/by-id/usb-EPSON_TM-T88V_J7S0012345-if00?baudrate=38400": "printer",
        f"serial://{dev}/ttyS0?baudrate=9600&suffix=CR": "scanner",
        f"hid://{dev}/input/by-id/usb-Datalogic_QuickScan-event-kbd?layout=us": "scanner",
        f"msr+hid://{dev}/input/by-id/usb-MagTek_USB_Swipe_Reader-event-kbd": "card_reader",
        f"hid://{dev}/input/by-id/usb-Logitech_Keyboard-event-kbd?layout=us": "scanner",
        f"camera://{dev}/v4l/by-id/usb-Webcam_C920-video-index0": "scanner",
        "usb://04b8:0e15?serial=X5KQ001234": "printer",
        f"file://{dev}/usb/lp0": "printer",
        "nfc+pcsc://ACS%20ACR122U%20PICC%20Interface": "card_reader",
    }
    assert {u: f.role for u, f in by_url.items()} == expected
    for url, role in expected.items():
        registry.validate(role, url)  # what we print is what the config accepts
    assert all(f.access == "ok" for f in found)  # root may open anything
    assert "by-id" in by_url[f"serial://{dev}/ttyS0?baudrate=9600&suffix=CR"].note
    assert "keyboard" in by_url[f"hid://{dev}/input/by-id/usb-Logitech_Keyboard-event-kbd?layout=us"].note


def test_access_follows_owner_group_and_mode():
    st = SimpleNamespace(st_mode=0o100660, st_uid=0, st_gid=990)
    assert _allowed(st, 1000, {990, 1000})  # in the device's group
    assert not _allowed(st, 1000, {1000})
    assert _allowed(SimpleNamespace(st_mode=0o100666, st_uid=0, st_gid=0), 1000, {1000})
    assert not _allowed(SimpleNamespace(st_mode=0o100600, st_uid=0, st_gid=990), 1000, {990})
    assert _allowed(SimpleNamespace(st_mode=0o100600, st_uid=1000, st_gid=0), 1000, set())


def test_unknown_user_and_missing_pcscd(dev):
    def no_pcscd():
        raise RuntimeError("Service not available")

    found = find_devices(dev_root=str(dev), user="no-such-user-here", comports=lambda: [], usb_devices=list,
                         pcsc_readers=no_pcscd)
    assert {f.access for f in found} == {"unknown"}
    assert any("pcscd" in f.note for f in found)


def test_cli_lists_devices_with_faked_comports(dev, monkeypatch, capsys):
    monkeypatch.setattr(serial.tools.list_ports, "comports", comports(dev))
    monkeypatch.setattr("posd.drivers.discovery._default_usb", usb)
    monkeypatch.setattr("posd.drivers.discovery._default_readers", readers)
    assert main(["devices", "--dev", str(dev), "--user", "root", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"role": "printer", "url": "usb://04b8:0e15?serial=X5KQ001234", "description": "EPSON TM-T20II",
            "access": "ok", "note": ""} in listed
    assert main(["devices", "--dev", str(dev), "--user", "root"]) == 0
    text = capsys.readouterr().out
    assert "msr+hid://" in text and "nfc+pcsc://" in text


def test_a_device_posd_may_not_open_fails_the_listing_with_json_too(dev, monkeypatch, capsys):
    """`posd devices --json` exited 0 with a device listed as denied, which the text listing exits 1 on:
    a script checking the exit status took the lane for ready."""
    monkeypatch.setattr(serial.tools.list_ports, "comports", comports(dev))
    monkeypatch.setattr("posd.drivers.discovery._default_usb", list)
    monkeypatch.setattr("posd.drivers.discovery._default_readers", lambda: [])
    (dev / "ttyS0").chmod(0o600)  # root's alone: nobody may open it
    assert main(["devices", "--dev", str(dev), "--user", "nobody", "--json"]) == 1
    listed = json.loads(capsys.readouterr().out)
    assert "denied" in {f["access"] for f in listed}
    # why, and what gives it to posd: in --json as in the text (a board's port of another group than dialout)
    (board,) = [f for f in listed if f["url"].startswith(f"serial://{dev}/ttyS0")]
    assert 'KERNEL=="ttyS0", GROUP="dialout"' in board["note"], board
    assert main(["devices", "--dev", str(dev), "--user", "nobody"]) == 1
    assert board["note"] in capsys.readouterr().out


def test_the_udev_rule_naming_a_devices_usb_vendor_is_found(tmp_path):
    """sysfs as the kernel lays it out (/sys/dev/char/MAJ:MIN -> the device, idVendor up the tree)."""
    from posd.drivers.discovery import udev_rule_for, usb_ids

    st = os.stat("/dev/null")  # a real character device; its sysfs is faked below
    sys_root = tmp_path / "sys"
    usb = sys_root / "devices/pci0000:00/usb1/1-2"
    node = usb / "1-2:1.0/ttyUSB0/tty/ttyUSB0"
    node.mkdir(parents=True)
    (usb / "idVendor").write_text("04b8\n")
    (usb / "idProduct").write_text("0202\n")
    (sys_root / "dev/char").mkdir(parents=True)
    (sys_root / "dev/char" / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}").symlink_to(node)
    assert usb_ids("/dev/null", str(sys_root)) == ("04b8", "0202")
    rules = tmp_path / "rules.d"
    rules.mkdir()
    (rules / "60-other.rules").write_text('SUBSYSTEM=="usb", ATTRS{idVendor}=="0519", GROUP="posd"\n')
    (rules / "70-posd-devices.rules").write_text(
        '# Epson\nSUBSYSTEM=="usb", ATTRS{idVendor}=="04b8", ATTRS{idProduct}=="0e15", GROUP="posd"\n'
        'SUBSYSTEM=="usb", ATTRS{idVendor}=="04b8", MODE="0660", GROUP="posd"\n')
    assert udev_rule_for("/dev/null", [str(rules)], str(sys_root)) == f"{rules}/70-posd-devices.rules:3"
    assert udev_rule_for("/dev/null", [str(tmp_path / "none")], str(sys_root)) is None
    assert udev_rule_for(str(tmp_path / "rules.d"), [str(rules)], str(sys_root)) is None  # not a device node
    assert usb_ids("/dev/null") is None  # the real sysfs: /dev/null is no USB device


def test_a_user_that_does_not_exist_is_a_usage_error(tmp_path):
    """`--user nosuchuser` was checked as the user running the command: doctor said every file was
    readable by root and exited 0, devices exited 0. A user named that does not exist is refused
    (exit 2) by name, before anything is checked; without --user, a machine with no posd user still
    checks (doctor as the user running it, devices with access unknown)."""
    import subprocess
    import sys

    cfg = tmp_path / "posd.toml"
    cfg.write_text((Path(__file__).parent.parent / "config" / "demo.toml").read_text())
    for command in (["doctor", "--config", str(cfg), "--no-central"], ["devices", "--dev", str(tmp_path)]):
        run = subprocess.run([sys.executable, "-m", "posd", *command, "--user", "nosuchuser"],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "no user 'nosuchuser'" in run.stderr, (command, run.stderr)
        assert run.stdout == "" and "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "posd", "devices", "--dev", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert "no user" not in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_a_device_posd_may_not_open_gets_advice_that_fits_it(dev):
    """`posd devices` told store IT to install systemd/posd-devices.rules (a path in the source tree) for
    every device posd may not open, a board's /dev/ttyS0 too, which is dialout's: the unit runs posd in
    dialout. The advice now follows the device's group, and names the rule where the package puts it."""
    from posd.drivers.discovery import access_hint

    os.chown(dev / "ttyS0", 0, 20)  # dialout (Debian's gid 20)
    found = find_devices(dev_root=str(dev), user="nobody", comports=comports(dev), usb_devices=list,
                         pcsc_readers=lambda: [])
    hints = {f.url: access_hint(f, "nobody") for f in found if f.access == "denied"}
    board = hints[f"serial://{dev}/ttyS0?baudrate=9600&suffix=CR"]
    assert "dialout" in board and "usermod -aG dialout nobody" in board and "rules" not in board
    wedge = hints[f"hid://{dev}/input/by-id/usb-Datalogic_QuickScan-event-kbd?layout=us"]
    assert "/lib/udev/rules.d/70-posd-devices.rules" in wedge and "GROUP=\"posd\"" in wedge
    assert not [h for h in hints.values() if "systemd/" in h]

"""Device URL parsing and the driver registry's validation messages."""

from __future__ import annotations

import builtins

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.drivers import registry
from posd.drivers.registry import DriverSpec, DriverUnavailableError
from posd.drivers.url import DeviceURL, DeviceURLError, parse_device_url


def test_serial_url_with_params():
    url = parse_device_url("serial:///dev/serial/by-id/usb-X?baudrate=9600&suffix=CR")
    assert url == DeviceURL(
        "serial", "", "/dev/serial/by-id/usb-X", {"baudrate": "9600", "suffix": "CR"},
        "serial:///dev/serial/by-id/usb-X?baudrate=9600&suffix=CR",
    )
    assert url.fs_path == "/dev/serial/by-id/usb-X"


def test_by_path_names_with_colons_stay_in_the_path():
    url = parse_device_url("serial:///dev/serial/by-path/pci-0000:00:14.0-usb-0:1:1.0-port0")
    assert url.fs_path == "/dev/serial/by-path/pci-0000:00:14.0-usb-0:1:1.0-port0"


def test_pty_url():
    url = parse_device_url("pty:///run/posd/scanner0?suffix=CR")
    assert (url.scheme, url.fs_path, url.params) == ("pty", "/run/posd/scanner0", {"suffix": "CR"})


@pytest.mark.parametrize("text, host, port", [
    ("tcp://127.0.0.1:7001", "127.0.0.1", 7001),
    ("tcp://10.0.0.5:9100", "10.0.0.5", 9100),
    ("tcp://[::1]:9100", "::1", 9100),
])
def test_tcp_urls(text, host, port):
    url = parse_device_url(text)
    assert (url.scheme, url.host, url.port) == ("tcp", host, port)


def test_file_and_preview_urls():
    assert parse_device_url("file:///dev/usb/lp0").fs_path == "/dev/usb/lp0"
    assert parse_device_url("preview:///var/lib/posd/slips").fs_path == "/var/lib/posd/slips"


def test_relative_preview_path_is_netloc_plus_path():
    url = parse_device_url("preview://var/slips")
    assert (url.netloc, url.path, url.fs_path) == ("var", "/slips", "var/slips")


@pytest.mark.parametrize("text", ["none", "NONE", " none "])
def test_none(text):
    url = parse_device_url(text)
    assert url.scheme == "none" and url.redacted() == "none"


def test_percent_escapes_decode_and_plus_stays_a_plus():
    url = parse_device_url("serial:///dev/my%20port?prefix=%5DE0&x=a+b")
    assert url.fs_path == "/dev/my port"
    assert url.params == {"prefix": "]E0", "x": "a+b"}


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("/dev/ttyUSB0", "no scheme"),
    ("serial:/dev/ttyUSB0", "no scheme"),
    ("1serial:///dev/x", "not a valid scheme"),
    ("serial:///dev/x?baudrate=1&baudrate=2", "more than once"),
    ("serial:///dev/x?baudrate", "has no value"),
    ("serial:///dev/x#frag", "'#'"),
    ("serial:///dev/x\n", None),  # trailing whitespace is trimmed: fine
    ("serial:///dev/\tx", "control characters"),
])
def test_malformed_urls_say_what_is_wrong(text, message):
    if message is None:
        parse_device_url(text)
        return
    with pytest.raises(DeviceURLError, match=message):
        parse_device_url(text)


def test_redacted_hides_passwords_and_secret_params():
    url = parse_device_url("tcp://user:hunter2@10.0.0.5:9100?token=abc&timeout=3")
    text = url.redacted()
    assert "hunter2" not in text and "abc" not in text
    assert "user:***@10.0.0.5:9100" in text and "timeout=3" in text
    assert str(url) == text


@given(st.text(max_size=200))
def test_parser_never_crashes_on_garbage(text):
    try:
        parse_device_url(text)
    except DeviceURLError:
        pass


# -- registry ----------------------------------------------------------------
def test_known_schemes_per_role():
    assert registry.known_schemes("scanner") == ["camera", "camera+file", "hid", "pty", "serial", "tcp"]
    assert registry.known_schemes("card_reader") == ["msr+hid", "msr+serial", "nfc+pcsc"]
    assert registry.known_schemes("printer") == ["file", "none", "preview", "serial", "tcp", "usb"]


def test_unknown_scheme_lists_the_known_ones_for_that_role():
    with pytest.raises(DeviceURLError) as err:
        registry.validate("printer", "usbx://04b8:0202")
    message = str(err.value)
    assert "usbx" in message
    for scheme in ("tcp://", "file://", "preview://", "none"):
        assert scheme in message
    assert "pty" not in message


def test_scheme_known_for_one_role_only():
    registry.validate("scanner", "pty:///run/posd/scanner0")
    with pytest.raises(DeviceURLError, match="unknown printer URL scheme 'pty'"):
        registry.validate("printer", "pty:///run/posd/scanner0")


@pytest.mark.parametrize("url, param", [
    ("serial:///dev/ttyUSB0?baudrate=fast", "baudrate"),
    ("serial:///dev/ttyUSB0?baudrate=12", "baudrate"),
    ("serial:///dev/ttyUSB0?suffix=ETX", "suffix"),
    ("serial:///dev/ttyUSB0?parity=X", "parity"),
    ("serial:///dev/ttyUSB0?stopbits=3", "stopbits"),
    ("pty:///run/posd/s0?idle_ms=-1", "idle_ms"),
    ("tcp://127.0.0.1:7001?timeout=0", "timeout"),
])
def test_bad_params_are_named(url, param):
    with pytest.raises(DeviceURLError, match=f"bad parameter {param}="):
        registry.validate("scanner", url)


def test_unknown_param_is_named_with_the_known_ones():
    with pytest.raises(DeviceURLError, match="unknown parameter 'baud'.*baudrate"):
        registry.validate("scanner", "serial:///dev/ttyUSB0?baud=9600")


@pytest.mark.parametrize("role, url, message", [
    ("scanner", "serial://", "needs a path"),
    ("scanner", "tcp://127.0.0.1", "needs host:port"),
    ("scanner", "tcp://127.0.0.1:http", "port must be an integer"),
    ("scanner", "tcp://127.0.0.1:\u0669\u0661\u0660\u0660", "port must be an integer written in the digits 0-9"),
    ("scanner", "serial:///dev/ttyUSB0?baudrate=\u06f9\u06f6\u06f0\u06f0", "must be an integer written in the digits"),
    ("scanner", "serial:///dev/ttyUSB0?baudrate=9_600", "must be an integer written in the digits"),
    ("scanner", "tcp://127.0.0.1:+9100", "port must be an integer"),
    ("printer", "tcp://127.0.0.1:70000", "port must be between"),
    ("printer", "tcp://10.0.0.5:9100/queue", "host:port only"),
    ("printer", "file://", "needs a path"),
])
def test_targets_are_checked(role, url, message):
    with pytest.raises(DeviceURLError, match=message):
        registry.validate(role, url)


def test_valid_urls_from_the_product_doc():
    for url in ("serial:///dev/serial/by-id/usb-X?baudrate=9600&suffix=CR",
                "pty:///run/posd/scanner0?suffix=CR", "tcp://127.0.0.1:7001"):
        registry.validate("scanner", url)
    for url in ("tcp://10.0.0.5:9100", "file:///dev/usb/lp0", "preview:///var/lib/posd/slips",
                "preview://var/slips", "none"):
        registry.validate("printer", url)


def test_options_are_typed_with_defaults():
    url = parse_device_url("serial:///dev/ttyUSB0?baudrate=38400&suffix=crlf&stopbits=1.5")
    options = registry.options_for("scanner", url)
    assert options["baudrate"] == 38400 and options["suffix"] == b"\r\n"
    assert options["stopbits"] == 1.5 and options["parity"] == "N" and options["prefix"] == b""


def test_unknown_role():
    with pytest.raises(ValueError, match="unknown device role"):
        registry.validate("drawer", "none")


def test_missing_library_names_the_package(monkeypatch):
    registry.register(DriverSpec("scanner", "fakehw", "posd.drivers.scanner_serial:SerialScanner",
                                 "path", package="pyserial", modules=("serial",)))
    real_import = builtins.__import__

    def no_serial(name, *args, **kwargs):
        if name == "serial" or name.startswith("serial."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_serial)
    try:
        with pytest.raises(DriverUnavailableError, match="pip install pyserial"):
            registry.open_scanner("s", "fakehw:///dev/x", on_data=lambda d: None)
    finally:
        registry.unregister("scanner", "fakehw")


def test_import_error_of_a_driver_module_is_not_unknown_scheme():
    registry.register(DriverSpec("scanner", "broken", "posd.drivers.no_such_module:X", "path",
                                 package="nothing", modules=("nothing",)))
    try:
        with pytest.raises(ModuleNotFoundError):
            registry.open_scanner("s", "broken:///dev/x", on_data=lambda d: None)
    finally:
        registry.unregister("scanner", "broken")


def test_printer_settings_are_validated():
    registry.validate_printer_settings("TM-T88V", 80)
    with pytest.raises(ValueError, match="unknown printer profile 'TM-T88'.*TM-T88"):
        registry.validate_printer_settings("TM-T88", 80)
    with pytest.raises(ValueError, match="width_mm must be one of 58, 80"):
        registry.validate_printer_settings("default", 76)


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:9220:9220", "tcp://127.0.0.1: 9230", "tcp://user@127.0.0.1:9100",
                                 "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000", "tcp://127.0.0.1:+9100"])
def test_a_port_the_driver_could_not_read_is_refused(url):
    """The check and the driver read one port: "127.0.0.1:9220:9220" passed the check (its last part)
    and the scanner then connected to port 0, the printer to 9100, for good."""
    for role in ("scanner", "printer"):
        with pytest.raises(DeviceURLError):
            registry.validate(role, url)


def test_the_port_checked_is_the_port_connected_to():
    for text, port in (("tcp://127.0.0.1:9100", 9100), ("tcp://[::1]:7001", 7001), ("tcp://till-3.local:1", 1)):
        assert registry.validate("printer", text).port == port


def test_none_takes_nothing_after_it():
    """none://x was taken as no printer: a path written after it (none:///dev/usb/lp0, a half-edited
    line) said nothing. (Scanners have no none: a lane lists none.)"""
    for text in ("none", "none://", "NONE"):
        assert registry.validate("printer", text).scheme == "none"
    for text in ("none://x", "none:///dev/usb/lp0"):
        with pytest.raises(DeviceURLError):
            registry.validate("printer", text)

"""camera+file:// through the real cv2.VideoCapture path, on clips generated here."""

from __future__ import annotations

import queue
import random

import numpy as np
import pytest

from posd.drivers import registry
from posd.drivers.camera_decode import FrameDecoder
from posd.drivers.camera_evidence import Debouncer
from posd.drivers.symbology import normalize, split_aim
from tests.support.clips import code_image, perturb, scene, write_clip

WAIT = 30.0
SIZE = (640, 360)

CASES = [  # symbology, text, perturbation
    ("QR", "posd:m:000123:sig45678", "rotate"),
    ("EAN13", "2900000000018", "blur"),
    ("CODE128", "M1234567", "perspective"),
    ("DATAMATRIX", "DM-00000042", "low_contrast"),
    ("QR", "posd:v:VOUCHER-7", "combined"),
]


def frames_for(symbology: str, text: str, kind: str, n: int, seed: int = 1) -> list[np.ndarray]:
    rng = random.Random(seed)
    code = code_image(symbology, text, {"QR": 4, "EAN13": 3, "CODE128": 2, "DATAMATRIX": 6}[symbology])
    base = scene(code, SIZE, at=(40, 40), rng=rng)
    image = perturb(base, kind, rng, 0.6)
    return [image] * n


def blank(n: int) -> list[np.ndarray]:
    return [np.full((SIZE[1], SIZE[0]), 150, np.uint8)] * n


def play(tmp_path, frames, *, fps=10.0, params="speed=0&debounce_ms=1500"):
    clip = write_clip(tmp_path / "clip.avi", frames, fps)
    return play_url(f"camera+file://{clip}?{params}")


def play_url(url):
    """Play a camera+file:// URL to its end; the scanner and the scans it delivered."""
    scans: queue.Queue = queue.Queue()
    scanner = registry.open_scanner("cam", url, on_data=scans.put)
    scanner.start()
    try:
        assert scanner.done.wait(WAIT), "the clip was not played to the end"
    finally:
        assert scanner.stop(timeout=WAIT)
    out = []
    while not scans.empty():
        out.append(scans.get())
    return scanner, out


@pytest.mark.parametrize("symbology, text, kind", CASES, ids=[f"{s}-{k}" for s, _, k in CASES])
def test_perturbed_codes_decode_through_the_capture_path(tmp_path, symbology, text, kind):
    params = "speed=0&debounce_ms=1500&symbologies=ean13,code128,qr,datamatrix"  # DataMatrix is off by default
    scanner, scans = play(tmp_path, frames_for(symbology, text, kind, 6), params=params)
    assert [(s.data, s.symbology) for s in scans] == [(text, symbology)]  # held in view: one scan
    assert scanner.frames_decoded == 6 and scanner.frames_skipped == 0


def test_the_same_code_again_after_the_window_is_a_new_scan(tmp_path):
    frames = frames_for("EAN13", "2900000000025", "clean", 5) + blank(20) + frames_for("EAN13", "2900000000025", "clean", 5)
    _, scans = play(tmp_path, frames, fps=10.0, params="speed=0&debounce_ms=1000")
    assert [s.data for s in scans] == ["2900000000025", "2900000000025"]


def test_two_codes_in_turn_are_two_scans(tmp_path):
    frames = frames_for("QR", "posd:m:1", "clean", 4) + frames_for("CODE128", "M7654321", "clean", 4)
    _, scans = play(tmp_path, frames)
    assert [s.data for s in scans] == ["posd:m:1", "M7654321"]


def test_real_time_playback_skips_frames_instead_of_queueing(tmp_path):
    # A 1280x720 clip at 1000 fps: reading a frame takes a few ms, decoding a frame with
    # no code in it (both decoders run) several times that, so the decoder falls behind.
    rng = np.random.default_rng(3)
    code = scene(code_image("QR", "posd:m:2", 6), (1280, 720), at=(100, 100))
    noise = [rng.integers(0, 255, (720, 1280), dtype=np.uint8) for _ in range(4)]
    frames = [code] * 10 + noise * 20
    scanner, scans = play(tmp_path, frames, fps=1000.0, params="speed=1&debounce_ms=5000")
    assert [s.data for s in scans] == ["posd:m:2"]
    assert scanner.frames_skipped > 0
    assert scanner.frames_decoded + scanner.frames_skipped == len(frames)


def test_missing_clip_is_offline(tmp_path):
    statuses: queue.Queue = queue.Queue()
    scanner = registry.open_scanner("cam", f"camera+file://{tmp_path}/none.avi", on_data=print,
                                    on_status=statuses.put, backoff_min=0.05, backoff_max=0.1)
    scanner.start()
    try:
        first = statuses.get(timeout=WAIT)
        assert (first.state.value, first.reason) == ("error", "offline")
    finally:
        assert scanner.stop(timeout=WAIT)


def test_debouncer_is_pure_and_restarts_the_window_while_in_view():
    d = Debouncer(1.0)
    assert d.accept("A", 0.0)
    assert not d.accept("A", 0.9)
    assert not d.accept("A", 1.8)  # still in view: window restarted at 0.9
    assert d.accept("A", 3.0)
    assert d.accept("B", 3.0)


def test_upc_a_and_ean13_compare_equal_and_aim_ids_split():
    assert normalize("EAN13", "036000291452") == ("EAN13", "0036000291452")
    assert split_aim("]C1" + "0105901234123457") == ("GS1_128", "0105901234123457")
    assert split_aim("]d2\x1d01") == ("GS1_DATAMATRIX", "\x1d01")
    assert split_aim("no aim") == (None, "no aim")


def test_pipeline_uses_zbar_when_zxing_finds_nothing(monkeypatch):
    decoder = FrameDecoder()
    assert decoder.decoders == ["zxing-cpp", "zbar"]
    image = scene(code_image("EAN13", "2900000000032", 3), SIZE, at=(20, 20))
    monkeypatch.setattr(decoder, "_zxing", None)
    found = decoder.decode(image)
    assert [(d.text, d.symbology, d.decoder) for d in found] == [("2900000000032", "EAN13", "zbar")]


def test_qr_means_the_full_qr_code_not_its_micro_kin():
    """A Micro QR is what a damaged corner inside a real QR can be misread as: under `qr` the
    camera reports full QR codes only, so that phantom never reaches the lane."""
    import zxingcpp

    from posd.drivers.camera_decode import zxing_decode, zxing_formats

    formats = zxing_formats(zxingcpp, ["qr"])

    def image(fmt):
        return np.asarray(zxingcpp.write_barcode_to_image(zxingcpp.create_barcode("8896", fmt), scale=6,
                                                          add_quiet_zones=True))

    micro = image(zxingcpp.BarcodeFormat.MicroQRCode)
    assert [b.text for b in zxingcpp.read_barcodes(micro)] == ["8896"]  # zxing-cpp itself reads it
    assert zxing_decode(micro, zxingcpp, formats) == []
    assert [r.text for r in zxing_decode(image(zxingcpp.BarcodeFormat.QRCode), zxingcpp, formats)] == ["8896"]

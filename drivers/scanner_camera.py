"""Camera scanners through OpenCV: ``camera:///dev/v4l/by-id/...`` and ``camera+file://clip``.

A grabber thread reads frames from ``cv2.VideoCapture`` into a one-frame
slot; the scanner's thread decodes whatever frame is newest. When decoding
is slower than the camera, frames are skipped (counted in
``frames_skipped``), never queued: a queue would only make every scan later.

``camera+file://`` plays a clip through the same capture and decoding path:
``speed=1`` paces it at the clip's frame rate (so frames are skipped exactly
as with a camera), ``speed=0`` hands every frame to the decoder (tests,
benchmarks). Clip time, not wall time, drives the debounce, so a clip gives
the same scans however fast it is played. At the end of a clip the scanner
stays idle (``finished`` is set) unless ``loop=1``.

Nothing reaches ``on_data`` unconfirmed: each frame's reads go through
``camera_evidence`` (fragments and contested places dropped, 1D codes read by
both decoders, matrix codes by their error correction), then the debounce.
A still image (``camera+file://card.png``) is a one-frame clip: what it shows
must be confirmed within that frame; looping it adds no evidence.

A camera that stops delivering frames (unplugged) is ``error``/``offline``
until it opens again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .base import DeviceError, Scanner
from .camera_decode import FrameDecoder
from .camera_evidence import DEFAULT_SYMBOLOGIES, Confirmer, Debouncer, Read, resolve_frame

__all__ = ["CameraScanner", "ClipScanner", "FrameSlot", "confirm_frame"]

log = logging.getLogger(__name__)


def confirm_frame(decoder: FrameDecoder, confirmer: Confirmer, gray: Any, now: float, *,
                  fresh: bool = True) -> list[Read]:
    """One grey frame through the decoders and the evidence rules: the codes confirmed in it."""
    return confirmer.feed(resolve_frame(decoder.decode(gray, confirmer.in_view(now))), now, fresh=fresh)


class FrameSlot:
    """Holds the newest frame only. ``put`` replaces (or, in lockstep, waits for the taker)."""

    def __init__(self, lockstep: bool = False) -> None:
        self.lockstep = lockstep
        self._frame: tuple[Any, float] | None = None
        self._cond = threading.Condition()
        self.skipped = 0
        self.closed = False

    def put(self, frame: Any, when: float, stop: threading.Event) -> None:
        with self._cond:
            while self.lockstep and self._frame is not None and not stop.is_set() and not self.closed:
                self._cond.wait(0.1)
            if self._frame is not None:
                self.skipped += 1
            self._frame = (frame, when)
            self._cond.notify_all()

    def take(self, timeout: float) -> tuple[Any, float] | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            item, self._frame = self._frame, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class CameraScanner(Scanner):
    is_clip = False

    def __init__(self, name: str, url: Any, on_data: Any, on_status: Any = None, *,
                 options: dict[str, Any], **kwargs: Any) -> None:
        import cv2  # lazily: the registry says what to install

        super().__init__(name, url, on_data, on_status, **kwargs)
        self._cv2 = cv2
        self.options = dict(options)
        self.path = url.fs_path
        self.decoder = FrameDecoder(symbologies=self.options.get("symbologies", DEFAULT_SYMBOLOGIES))
        self.confirmer = Confirmer(len(self.decoder.decoders))
        self.debouncer = Debouncer(self.options.get("debounce_ms", 1500) / 1000.0)
        self._previous: Any = None  # the last decoded frame: a repeat of it is no new evidence
        self.frames_decoded = 0
        self.finished = threading.Event()  # the clip's last frame was read
        self.done = threading.Event()  # ... and decoded, its scans delivered
        self._cap: Any = None
        self._slot: FrameSlot | None = None
        self._grab_stop = threading.Event()
        self._grabber: threading.Thread | None = None
        self._grab_error: str | None = None

    @property
    def frames_skipped(self) -> int:
        return self._slot.skipped if self._slot else 0

    # -- capture ----------------------------------------------------------------
    def _capture(self) -> Any:
        cv2 = self._cv2
        cap = cv2.VideoCapture(self.path, cv2.CAP_V4L2)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.options.get("width", 1280))
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.options.get("height", 720))
            cap.set(cv2.CAP_PROP_FPS, self.options.get("fps", 30))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        return cap

    def _open(self) -> None:
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise DeviceError("offline", "cannot open the video source")
        self._cap = cap
        self._slot = FrameSlot(lockstep=self.is_clip and self.options.get("speed", 1.0) == 0)
        self._grab_stop.clear()
        self._grab_error = None
        self._grabber = threading.Thread(target=self._grab_loop, name=f"posd-camera-{self.name}", daemon=True)
        self._grabber.start()

    def _grab_loop(self) -> None:
        cap, slot = self._cap, self._slot
        assert cap is not None and slot is not None
        while not self._grab_stop.is_set():
            ok, frame = cap.read()
            if not ok:
                self._grab_error = "no frames from the camera"
                return
            slot.put(frame, self._clock(), self._grab_stop)

    def _read_scans(self, timeout: float) -> list[tuple[str, str | None]]:
        slot = self._slot
        if slot is None:
            raise DeviceError("offline", "not open")
        item = slot.take(timeout)
        if item is None:
            if self.finished.is_set():
                self.done.set()  # the whole clip has been decoded and its scans delivered
            if self._grab_error and not (self._grabber and self._grabber.is_alive()):
                raise DeviceError("offline", self._grab_error)
            return []
        frame, when = item
        gray = frame if frame.ndim == 2 else self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2GRAY)
        fresh = self._previous is None or self._previous.shape != gray.shape or \
            self._cv2.norm(self._previous, gray, self._cv2.NORM_INF) != 0
        self._previous = gray
        confirmed = confirm_frame(self.decoder, self.confirmer, gray, when, fresh=fresh)
        self.frames_decoded += 1
        return [(r.text, r.symbology) for r in confirmed if self.debouncer.accept(r.text, when)]

    def _close(self) -> None:
        self._grab_stop.set()
        if self._slot is not None:
            self._slot.close()
        if self._grabber is not None:
            self._grabber.join(5.0)
            self._grabber = None
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class ClipScanner(CameraScanner):
    """A video file played as a camera; clip time drives pacing and debounce."""

    is_clip = True

    def _capture(self) -> Any:
        return self._cv2.VideoCapture(self.path)

    def _grab_loop(self) -> None:
        cv2, cap, slot = self._cv2, self._cap, self._slot
        assert cap is not None and slot is not None
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        speed = float(self.options.get("speed", 1.0))
        start, index, offset = time.monotonic(), 0, 0.0
        while not self._grab_stop.is_set():
            ok, frame = cap.read()
            if not ok:
                if not self.options.get("loop") or index == 0:
                    self.finished.set()
                    return
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                offset += index / fps
                index = 0
                continue
            clip_time = offset + index / fps
            index += 1
            if speed > 0:
                delay = start + clip_time / speed - time.monotonic()
                if delay > 0 and self._grab_stop.wait(delay):
                    return
            slot.put(frame, clip_time, self._grab_stop)

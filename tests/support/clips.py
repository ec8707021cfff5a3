"""Generated barcode images and video clips for the camera tests (seeded sets: ``camera_sets``).

Codes are drawn by zxing-cpp's writer, placed on a grey 1280x720 (or smaller)
scene and perturbed: blur, rotation, perspective, low contrast, noise. Clips
are written with OpenCV's VideoWriter (MJPG in .avi, high quality) and read
back through the real ``cv2.VideoCapture`` path by ``camera+file://``.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import zxingcpp

__all__ = ["code_image", "scene", "perturb", "write_clip"]

FORMATS = {
    "QR": zxingcpp.BarcodeFormat.QRCode,
    "EAN13": zxingcpp.BarcodeFormat.EAN13,
    "CODE128": zxingcpp.BarcodeFormat.Code128,
    "DATAMATRIX": zxingcpp.BarcodeFormat.DataMatrix,
}


def code_image(symbology: str, text: str, scale: int) -> np.ndarray:
    barcode = zxingcpp.create_barcode(text, FORMATS[symbology])
    image = np.array(zxingcpp.write_barcode_to_image(barcode, scale=scale, add_quiet_zones=True))
    if symbology in ("EAN13", "CODE128"):
        image = cv2.resize(image, (image.shape[1], max(image.shape[0], image.shape[1] // 3)),
                           interpolation=cv2.INTER_NEAREST)
    return image


def scene(code: np.ndarray, size: tuple[int, int] = (1280, 720), *, at: tuple[int, int] | None = None,
          rng: random.Random | None = None) -> np.ndarray:
    """The code pasted on a textured grey background (a counter, a hand) of ``size`` (w, h)."""
    rng = rng or random.Random(0)
    w, h = size
    base = np.full((h, w), 150, np.uint8)
    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 40, (h // 8, w // 8), dtype=np.uint8)
    base = cv2.add(base, cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR))
    ch, cw = code.shape
    if cw > w or ch > h:
        f = min(w / cw, h / ch) * 0.9
        code = cv2.resize(code, (int(cw * f), int(ch * f)), interpolation=cv2.INTER_AREA)
        ch, cw = code.shape
    x, y = at if at else (rng.randrange(0, w - cw + 1), rng.randrange(0, h - ch + 1))
    base[y:y + ch, x:x + cw] = code
    return base


def perturb(image: np.ndarray, kind: str, rng: random.Random, strength: float = 1.0) -> np.ndarray:
    h, w = image.shape
    if kind == "clean":
        return image
    if kind == "blur":
        k = 2 * int(1 + 2 * strength) + 1
        return cv2.GaussianBlur(image, (k, k), 0.8 + 1.2 * strength)
    if kind == "rotate":
        angle = rng.uniform(-35, 35) * strength
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        return cv2.warpAffine(image, m, (w, h), borderValue=150)
    if kind == "perspective":
        d = 0.12 * strength
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        jitter = [(rng.uniform(0, d) * w, rng.uniform(0, d) * h) for _ in range(4)]
        dst = np.float32([[jitter[0][0], jitter[0][1]], [w - jitter[1][0], jitter[1][1]],
                          [w - jitter[2][0], h - jitter[2][1]], [jitter[3][0], h - jitter[3][1]]])
        return cv2.warpPerspective(image, cv2.getPerspectiveTransform(src, dst), (w, h), borderValue=150)
    if kind == "low_contrast":
        span = 60 - 35 * strength
        return (110 + image.astype(np.float32) * (span / 255.0)).astype(np.uint8)
    if kind == "noise":
        noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 12 + 18 * strength, image.shape)
        return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if kind == "combined":
        out = perturb(image, "rotate", rng, strength * 0.6)
        out = perturb(out, "perspective", rng, strength * 0.6)
        out = perturb(out, "low_contrast", rng, strength * 0.6)
        return perturb(out, "blur", rng, strength * 0.5)
    raise ValueError(f"unknown perturbation {kind!r}")


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 15.0) -> Path:
    """Write grayscale frames as an MJPG .avi that ``cv2.VideoCapture`` reads back."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame)
    finally:
        writer.release()
    return path

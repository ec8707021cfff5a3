"""Seeded perturbed clip sets for the camera: what a lane's camera really sees.

``make_clip(seed)`` draws one short clip (a few 1280x720 grey frames, each
slightly different: the hand moves, sensor noise, JPEG from the camera) of
one scenario: a member card (EAN-13 or Code 128), a phone showing a QR code,
a printed voucher, a DataMatrix label, two codes in view, or a trap:

- ``trap_upce``: an EAN-13 member card whose left half is itself a valid
  UPC-E symbol (about one card number in ten is), with the right half under
  a thumb or scuffed: a decoder may report the UPC-E it finds inside;
- ``trap_damaged``: an EAN-13 with bars flipped over part of their height
  (scratches, ink): a decoder may read another valid EAN-13.

Every clip draws its own perturbations: defocus and motion blur, rotation
and perspective, low contrast, uneven light and glare, sensor noise, JPEG
artefacts, partial occlusion by a finger, damaged bars. ``Clip.codes`` is the
truth: the (family, text) of every code printed in view. A read that is not
one of them is a false read.

Sets are ranges of seeds. ``DEV_SEEDS`` (the tests' fixed set),
``HELD_OUT_SEEDS`` (only ever measured, by ``make bench``, never used to
choose anything in the pipeline) and ``HELD_OUT_2_SEEDS`` (a second held-out
range, first drawn after the pipeline's cost was cut, to check that cutting it
was not fitted to the first) do not overlap.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

import cv2
import numpy as np
import zxingcpp

from posd.drivers.symbology import upce_expand

__all__ = ["Clip", "make_clip", "clip_set", "DEV_SEEDS", "HELD_OUT_SEEDS", "HELD_OUT_2_SEEDS", "STILL_SEEDS",
           "SCENARIOS", "ean13_with_upce_half", "gtin_check"]

DEV_SEEDS = range(1, 10_000)
HELD_OUT_SEEDS = range(1_000_000, 1_010_000)
STILL_SEEDS = range(2_000_000, 2_010_000)  # single photos: one frame each
HELD_OUT_2_SEEDS = range(3_000_000, 3_010_000)

SIZE = (1280, 720)
SCENARIOS = {  # name: weight
    "card_ean13": 4, "card_code128": 2, "phone_qr": 3, "voucher_code128": 2, "label_datamatrix": 1,
    "two_codes": 2, "trap_upce": 2, "trap_damaged": 3,
}
_FORMATS = {"EAN13": zxingcpp.BarcodeFormat.EAN13, "CODE128": zxingcpp.BarcodeFormat.Code128,
            "QR": zxingcpp.BarcodeFormat.QRCode, "DATAMATRIX": zxingcpp.BarcodeFormat.DataMatrix}
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass
class Clip:
    seed: int
    scenario: str
    codes: set[tuple[str, str]]  # (symbology, text) in view
    frames: list[np.ndarray] = field(repr=False)
    perturbations: tuple[str, ...] = ()


# -- code texts ------------------------------------------------------------------
def gtin_check(body: str) -> str:
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def ean13_with_upce_half(rng: random.Random, first: str = "2", prefix: str = "9") -> str:
    """An EAN-13 whose left half (first digit = UPC-E parity) is a valid UPC-E symbol too.

    EAN-13's first-digit parity patterns are UPC-E's number-system-1 patterns, so the
    left guard + six digits + centre guard read as UPC-E ``1 d1..d6 d0`` whenever the
    expanded UPC-A ``1...`` has check digit d0.
    """
    while True:
        six = prefix + "".join(rng.choice(string.digits) for _ in range(6 - len(prefix)))
        if gtin_check(upce_expand("1" + six + "0")[:-1]) == first:
            body = first + six + "".join(rng.choice(string.digits) for _ in range(5))
            return body + gtin_check(body)


def _member_ean13(rng: random.Random) -> str:
    body = "29" + "".join(rng.choice(string.digits) for _ in range(10))
    return body + gtin_check(body)


def _text(symbology: str, rng: random.Random, scenario: str) -> str:
    if symbology == "EAN13":
        return _member_ean13(rng)
    if symbology == "CODE128":
        if scenario == "voucher_code128":
            return "V" + "".join(rng.choice(_CROCKFORD) for _ in range(12))
        return "M" + "".join(rng.choice(string.digits) for _ in range(rng.choice((7, 9, 11))))
    if symbology == "QR":  # a signed member token: key id, payload and signature, base64url
        alphabet = string.ascii_letters + string.digits + "-_"
        return "posd:m1:" + "".join(rng.choice(alphabet) for _ in range(rng.randint(24, 110)))
    return "\x1d01" + "".join(rng.choice(string.digits) for _ in range(14)) if rng.random() < 0.3 \
        else "LBL-" + "".join(rng.choice(_CROCKFORD) for _ in range(8))


# -- drawing -----------------------------------------------------------------
def _symbol(symbology: str, text: str, module_px: int) -> np.ndarray:
    barcode = zxingcpp.create_barcode(text, _FORMATS[symbology])
    image = np.array(zxingcpp.write_barcode_to_image(barcode, scale=module_px, add_quiet_zones=True))
    if symbology in ("EAN13", "CODE128"):
        height = int(image.shape[1] * (0.45 if symbology == "EAN13" else 0.3))
        image = cv2.resize(image, (image.shape[1], height), interpolation=cv2.INTER_NEAREST)
    return image


def _card(symbol: np.ndarray, rng: random.Random, *, caption: str = "", tone: int = 235,
          margin: float = 0.25) -> tuple[np.ndarray, tuple[int, int]]:
    """The symbol on a card (or a slip) with some printed text around it, and where the symbol is."""
    sh, sw = symbol.shape
    w = int(sw * (1 + 2 * margin))
    h = max(int(w * 0.63), sh + int(sw * margin))
    card = np.full((h, w), tone, np.uint8)
    x, y = (w - sw) // 2, max(4, (h - sh) // 2 + rng.randint(-sh // 8 - 1, sh // 8 + 1))
    y = min(y, h - sh - 1)
    card[y:y + sh, x:x + sw] = np.minimum(symbol, tone)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.4, w / 900)
    if y > 30 * scale:
        cv2.putText(card, rng.choice(["LOYALTY", "KARTA STALEGO KLIENTA", "MEMBER", "VOUCHER"]),
                    (x, max(int(20 * scale), y - int(12 * scale))), font, scale, 60, max(1, int(2 * scale)))
    if caption and h - (y + sh) > 24 * scale:
        cv2.putText(card, caption, (x, min(h - 4, y + sh + int(26 * scale))), font, scale * 0.9, 40,
                    max(1, int(2 * scale)))
    return card, (x, y)


def _phone(symbol: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    sh, sw = symbol.shape
    screen = np.full((int(sh * 1.9), int(sw * 1.25)), 245, np.uint8)
    y, x = int(sh * 0.45), (screen.shape[1] - sw) // 2
    screen[y:y + sh, x:x + sw] = symbol
    bezel = max(6, sw // 14)
    phone = np.full((screen.shape[0] + 2 * bezel, screen.shape[1] + 2 * bezel), 25, np.uint8)
    phone[bezel:-bezel, bezel:-bezel] = screen
    return phone, (x + bezel, y + bezel)


def _damage(symbol: np.ndarray, module_px: int, rng: random.Random, flips: int) -> None:
    """Flip whole module columns over part of the bar height: scratches and ink, never full height."""
    h, w = symbol.shape
    quiet = 11 * module_px
    for _ in range(flips):
        x = rng.randrange(quiet + 3 * module_px, w - quiet - 3 * module_px)
        x -= (x - quiet) % module_px
        span = rng.uniform(0.3, 0.7)
        y0 = rng.randrange(0, int(h * (1 - span)) + 1)
        y1 = y0 + int(h * span)
        column = symbol[y0:y1, x:x + module_px]
        symbol[y0:y1, x:x + module_px] = 255 - column


def _paste(background: np.ndarray, item: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Warp ``item`` onto ``quad`` of ``background`` (in place); the item-to-frame homography."""
    ih, iw = item.shape
    f = float(np.linalg.norm(quad[1] - quad[0])) / iw
    if f < 0.8:  # shrinking: low-pass first, as the lens and the sensor do
        item = cv2.GaussianBlur(item, (0, 0), 0.45 / f)
    m = cv2.getPerspectiveTransform(np.float32([[0, 0], [iw, 0], [iw, ih], [0, ih]]), np.float32(quad))
    h, w = background.shape
    warped = cv2.warpPerspective(item, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpPerspective(np.full_like(item, 255), m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = mask.astype(np.float32) / 255.0
    background[:] = (warped * alpha + background * (1 - alpha)).astype(np.uint8)
    return m


def _background(rng: random.Random) -> np.ndarray:
    w, h = SIZE
    base = rng.randint(70, 170)
    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 50, (h // 16, w // 16), dtype=np.uint8)
    out = cv2.add(np.full((h, w), base, np.uint8), cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC))
    for _ in range(rng.randint(0, 4)):  # the counter's edges, a receipt, a till
        p1 = (rng.randrange(w), rng.randrange(h))
        p2 = (rng.randrange(w), rng.randrange(h))
        cv2.line(out, p1, p2, rng.randint(20, 230), rng.randint(1, 5))
    return out


def _finger(frame: np.ndarray, quad: np.ndarray, rng: random.Random, *, part: tuple[float, float]) -> None:
    """A fingertip over the stretch ``part`` (fractions along the code's width) of the quad."""
    tl, tr, br, bl = quad
    a, b = part
    top = tl + (tr - tl) * ((a + b) / 2)
    bottom = bl + (br - bl) * ((a + b) / 2)
    centre = (top + bottom) / 2
    width = float(np.linalg.norm(tr - tl)) * (b - a) / 2
    height = float(np.linalg.norm(bl - tl)) * 0.9
    angle = float(np.degrees(np.arctan2(*(bottom - top)[::-1])))
    shade = rng.randint(120, 190)
    cv2.ellipse(frame, (int(centre[0]), int(centre[1])), (max(4, int(height)), max(4, int(width))), angle,
                0, 360, shade, -1)
    cv2.GaussianBlur(frame, (0, 0), 0.8, dst=frame)


# -- frames --------------------------------------------------------------------
def _quad(rng: random.Random, item_w: int, item_h: int, *, width: tuple[float, float],
          region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> np.ndarray:
    """Where the held item's corners land in the frame: size, place, rotation, tilt."""
    w, h = SIZE
    width_px = rng.uniform(*width)
    height_px = width_px * item_h / item_w
    half = np.hypot(width_px, height_px) / 2
    x0, y0, x1, y1 = region
    lo_x, hi_x = max(half * 1.1, x0 * w + half * 0.5), min(w - half * 1.1, x1 * w - half * 0.5)
    lo_y, hi_y = max(half * 1.1, y0 * h), min(h - half * 1.1, y1 * h)
    cx = rng.uniform(lo_x, hi_x) if lo_x < hi_x else (x0 + x1) * w / 2
    cy = rng.uniform(lo_y, hi_y) if lo_y < hi_y else (y0 + y1) * h / 2
    corners = np.float32([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * np.float32([width_px / 2, height_px / 2])
    tilt = rng.uniform(0, 0.08)
    corners += np.float32([[rng.uniform(-tilt, tilt) * width_px, rng.uniform(-tilt, tilt) * height_px]
                           for _ in range(4)])
    a = np.deg2rad(rng.uniform(-30, 30))
    rot = np.float32([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return corners @ rot.T + np.float32([cx, cy])


def _moved(quad: np.ndarray, dx: float, dy: float, degrees: float) -> np.ndarray:
    centre = quad.mean(axis=0)
    a = np.deg2rad(degrees)
    rot = np.float32([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (quad - centre) @ rot.T + centre + np.float32([dx, dy])


def _camera(frame: np.ndarray, rng: random.Random, effects: dict) -> np.ndarray:
    """Lens, light and sensor for one frame; ``effects`` fixed per clip, small changes per frame."""
    out = frame.astype(np.float32)
    if "light" in effects:
        gx, gy, off = effects["light"]
        h, w = out.shape
        ramp = (np.arange(w, dtype=np.float32)[None, :] / w - 0.5) * gx + \
               (np.arange(h, dtype=np.float32)[:, None] / h - 0.5) * gy
        out = out + ramp + off
    if "glare" in effects:
        (cx, cy), (ax, ay), strength = effects["glare"]
        h, w = out.shape
        yy, xx = np.ogrid[:h, :w]
        spot = np.exp(-(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2))
        out = out + spot.astype(np.float32) * strength
    if "contrast" in effects:
        k, mid = effects["contrast"]
        out = mid + (out - 128.0) * k
    out = np.clip(out, 0, 255).astype(np.uint8)
    if "defocus" in effects:
        sigma = max(0.3, effects["defocus"] + rng.uniform(-0.15, 0.15))
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if "motion" in effects:
        length, angle = effects["motion"]
        length = max(2, int(round(length + rng.uniform(-1, 1))))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        out = cv2.filter2D(out, -1, kernel / max(kernel.sum(), 1e-6))
    sigma = effects.get("noise", 2.0)
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, sigma, out.shape).astype(np.float32)
    out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    quality = effects.get("jpeg", 90)
    ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(quality + rng.randint(-3, 3))])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if ok else out


def _effects(rng: random.Random, scenario: str) -> dict:
    effects: dict = {"noise": rng.uniform(1.5, 6.0), "jpeg": rng.randint(75, 92)}
    hard = 0.55 if scenario.startswith("trap") else 0.45
    if rng.random() < hard:
        effects["defocus"] = rng.uniform(0.6, 2.0)
    if rng.random() < 0.2:
        effects["motion"] = (rng.uniform(3, 8), rng.uniform(0, 180))
    if rng.random() < 0.3:
        effects["contrast"] = (rng.uniform(0.22, 0.6), rng.uniform(90, 170))
    if rng.random() < 0.35:
        effects["light"] = (rng.uniform(-70, 70), rng.uniform(-70, 70), rng.uniform(-30, 30))
    if rng.random() < 0.25:
        effects["noise"] = rng.uniform(6, 16)
    if rng.random() < 0.25:
        effects["jpeg"] = rng.randint(25, 60)
    return effects


def make_clip(seed: int, frames: int = 4, scenario: str | None = None) -> Clip:
    """One clip of ``frames`` frames; the same seed always gives the same clip."""
    rng = random.Random(seed)
    if scenario is None:
        names = list(SCENARIOS)
        scenario = rng.choices(names, weights=[SCENARIOS[n] for n in names])[0]
    effects = _effects(rng, scenario)
    items: list[dict] = []  # what is in view: an image, its pose, the code's quad inside it
    codes: set[tuple[str, str]] = set()
    tags: list[str] = sorted(k for k in effects if k not in ("noise", "jpeg") or
                             (k == "noise" and effects[k] > 6) or (k == "jpeg" and effects[k] < 70))

    def add(symbology: str, text: str, module_px: int, *, width: tuple[float, float], holder: str = "card",
            damage: int = 0, finger: tuple[float, float] | None = None,
            region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> None:
        symbol = _symbol(symbology, text, module_px)
        if damage:
            _damage(symbol, module_px, rng, damage)
        if holder == "phone":
            image, (sx, sy) = _phone(symbol)
        else:
            caption = text if symbology in ("EAN13", "CODE128") and rng.random() < 0.7 else ""
            tone = 245 if holder == "slip" else rng.randint(200, 245)
            image, (sx, sy) = _card(symbol, rng, caption=caption, tone=tone)
        ih, iw = image.shape
        sh, sw = symbol.shape
        quad = _quad(rng, iw, ih, width=width, region=region)
        items.append({"image": image, "quad": quad, "symbol_box": (sx, sy, sw, sh), "finger": finger})
        codes.add((symbology, text))

    if scenario == "card_ean13":
        add("EAN13", _member_ean13(rng), rng.choice((2, 3)), width=(400, 820))
    elif scenario == "card_code128":
        add("CODE128", _text("CODE128", rng, scenario), rng.choice((2, 3)), width=(400, 820))
    elif scenario == "voucher_code128":
        add("CODE128", _text("CODE128", rng, scenario), 2, width=(420, 820), holder="slip")
    elif scenario == "phone_qr":
        add("QR", _text("QR", rng, scenario), 4, width=(160, 420), holder="phone")
    elif scenario == "label_datamatrix":
        add("DATAMATRIX", _text("DATAMATRIX", rng, scenario), 6, width=(140, 360))
    elif scenario == "two_codes":
        left, right = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)
        first, second = rng.sample(["EAN13", "CODE128", "QR"], 2)
        for symbology, region in ((first, left), (second, right)):
            holder = "phone" if symbology == "QR" else "card"
            width = (170, 300) if symbology == "QR" else (330, 560)
            add(symbology, _text(symbology, rng, scenario), 4 if symbology == "QR" else 2, width=width,
                holder=holder, region=region)
    elif scenario == "trap_upce":
        # The right half under a thumb, or scuffed away; the left half is a valid UPC-E.
        text = ean13_with_upce_half(rng)
        if rng.random() < 0.6:
            add("EAN13", text, rng.choice((2, 3)), width=(330, 700), finger=(rng.uniform(0.52, 0.6), 1.05))
        else:
            add("EAN13", text, rng.choice((2, 3)), width=(330, 700), damage=rng.randint(3, 7))
        tags.append("upce_half")
    elif scenario == "trap_damaged":
        text = ean13_with_upce_half(rng) if rng.random() < 0.3 else _member_ean13(rng)
        add("EAN13", text, rng.choice((2, 3)), width=(330, 700), damage=rng.randint(1, 4))
        tags.append("damaged_bars")
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    if scenario in ("card_ean13", "card_code128", "phone_qr") and rng.random() < 0.12:
        items[0]["finger"] = (rng.choice((-0.1, 0.75)), rng.choice((0.2, 1.1)))
        tags.append("finger")

    if rng.random() < 0.15:  # a glossy card under the till's lamp
        centre = items[0]["quad"].mean(axis=0)
        size = float(np.linalg.norm(items[0]["quad"][1] - items[0]["quad"][0]))
        effects["glare"] = ((centre[0] + rng.uniform(-0.4, 0.4) * size, centre[1] + rng.uniform(-0.2, 0.2) * size),
                            (rng.uniform(0.08, 0.2) * size, rng.uniform(0.08, 0.25) * size), rng.uniform(60, 140))
        tags.append("glare")

    background = _background(rng)
    clip_frames = []
    drift = (rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-0.6, 0.6))
    for n in range(frames):
        frame = background.copy()
        for item in items:
            quad = _moved(item["quad"], drift[0] * n + rng.uniform(-0.7, 0.7),
                          drift[1] * n + rng.uniform(-0.7, 0.7), drift[2] * n)
            m = _paste(frame, item["image"], quad)
            if item["finger"] is not None:
                sx, sy, sw, sh = item["symbol_box"]
                box = np.float32([[[sx, sy], [sx + sw, sy], [sx + sw, sy + sh], [sx, sy + sh]]])
                _finger(frame, cv2.perspectiveTransform(box, m)[0], rng, part=item["finger"])
        clip_frames.append(_camera(frame, rng, effects))
    return Clip(seed, scenario, codes, clip_frames, tuple(tags))


def clip_set(seeds: range, count: int, frames: int = 4) -> list[Clip]:
    """The first ``count`` clips of a seed range."""
    return [make_clip(seed, frames) for seed in list(seeds)[:count]]

"""Decoding barcodes in camera frames: two decoders, each checking the other.

``FrameDecoder.decode(gray)`` returns every read found in one grayscale
frame, each with where it is (``camera_evidence.Read``):

1. zxing-cpp reads the whole frame along its rows (only the lane's symbologies);
2. OpenCV's 1D barcode detector says where bars are (on a small copy of the
   frame, at any angle) and, at each such place that zxing-cpp did not read
   (a second code beside the first, or the only one), both decoders read a
   cleaned-up crop (as it is, bars turned upright and smoothed along their
   length, enlarged, contrast equalised): this reads codes neither decoder
   reads on the whole frame; when no bars are seen, zbar reads the whole
   frame (only every other row, for 1D codes, when zxing-cpp read a matrix
   code: a card beside a phone);
3. every 1D read that only one decoder made is handed to the other decoder
   on a crop around it, cleaned up the same ways until it answers: a second,
   independent opinion costs a crop, not a frame. The crop reaches well past
   the symbol's ends, so a fragment (a UPC-E inside an EAN-13) shows the
   other decoder its parent symbol. A code already confirmed and still at
   that place (``Confirmer.in_view``) needs no second opinion again;
4. every EAN/UPC place read in the frame and not yet confirmed gets one more
   look: zbar on the crop with its bars turned upright and smoothed along
   their length. Scratched or inked bars can read as another valid EAN-13
   along most rows, to both decoders alike (a check digit catches one wrong
   digit, not two); smoothed along the bars, the rows the damage missed
   often read the printed code. A different code there makes the place
   contested (``resolve_frame``), so the frame says nothing about it.

Each crop's cleaned-up views are made once and shared by both decoders.
Where a frame's time goes (CPU on one core): ``make bench``.

What these reads are allowed to mean is ``camera_evidence``'s business. zbar
has no DataMatrix, zxing-cpp covers it. pyzbar is optional: without libzbar0
the pipeline is zxing-cpp alone (logged once), and 1D codes then need
several frames. Figures: ``make bench`` (``bench/camera.json``).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Callable, Iterable

from .camera_evidence import DEFAULT_SYMBOLOGIES, MATRIX_SYMBOLOGIES, Read, same_place
from .symbology import from_zbar, from_zxing, normalize

__all__ = ["FrameDecoder", "zxing_decode", "zbar_decode", "zxing_formats", "zbar_symbols"]

log = logging.getLogger(__name__)

# Our config names -> each library's names for the formats behind them. `qr` is the full QR Code
# only: a Micro QR (at most 21 characters, never on a member card or a phone's screen) is what a
# damaged finder corner inside a real QR code can be misread as, a code that is not in view.
_ZXING_FORMATS = {
    "ean13": ("EAN13", "UPCA"), "ean8": ("EAN8",), "upce": ("UPCE",), "code128": ("Code128",),
    "code39": ("Code39",), "code93": ("Code93",), "itf": ("ITF",), "codabar": ("Codabar",),
    "databar": ("DataBar", "DataBarExpanded", "DataBarLimited"), "qr": ("QRCode",),
    "datamatrix": ("DataMatrix",), "pdf417": ("PDF417",), "aztec": ("Aztec",),
}
_ZBAR_SYMBOLS = {
    "ean13": ("EAN13", "UPCA"), "ean8": ("EAN8",), "upce": ("UPCE",), "code128": ("CODE128",),
    "code39": ("CODE39",), "code93": ("CODE93",), "itf": ("I25",), "codabar": ("CODABAR",),
    "databar": ("DATABAR", "DATABAR_EXP"), "qr": ("QRCODE",),
}
# How far past a 1D read's centre its verification crop reaches, in read lengths: past the
# symbol's ends (0.5) and quiet zones; further for the symbologies that fit inside an EAN-13.
_CROP_REACH = 0.85
_FRAGMENT_REACH = 1.5
_FRAGMENT_PRONE = ("UPCE", "EAN8")
# zbar on a crop whose bars were turned upright and smoothed along their length: its rows, no
# columns (columns run along the bars and read nothing). One row in three read as well on
# clips but lost 2 of 150 still photos: every row.
_UPRIGHT_ROWS = 1
_LOCATE_AT = 360  # px, the short side the detector works at
_LOCATED_VARIANTS = 2  # per decoder on a located crop: the likeliest; more cost more than they read
_BESIDE_ROWS = 2  # zbar's rows on a frame where only a matrix code was read and no bars were seen
_LOCATED_PLACES = 4  # places with bars read per frame, the detector's likeliest first
# The view an EAN/UPC place is looked at again in before it may count (see 4. above): bars
# smoothed over a quarter of their height, on a crop reaching just past the symbol's quiet zones
# (a tenth of its length past each end). On 1,100 harshly damaged card stills it turned one of
# two false reads into a contested place and lost no true read there (1 of 100 on 150 mixed
# stills); the other false read was wrong along every row, in every view. Reaching as far as a
# second opinion's crop (0.85) cost a quarter more CPU on a still with one card in it and read
# nothing more.
_CONTEST_VIEW = "upright_coarse"
_CONTEST_REACH = 0.6


def zxing_formats(zxingcpp: Any, symbologies: Iterable[str]) -> list[Any]:
    return [getattr(zxingcpp.BarcodeFormat, f) for s in sorted(symbologies) for f in _ZXING_FORMATS[s]]


def zbar_symbols(pyzbar: Any, symbologies: Iterable[str]) -> list[Any]:
    return [getattr(pyzbar.ZBarSymbol, z) for s in sorted(symbologies) for z in _ZBAR_SYMBOLS.get(s, ())]


def _place(points: list[tuple[float, float]], linear: bool) -> tuple[float, float, float]:
    """Centre and length of a zxing-cpp quad (tl, tr, br, bl)."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
    cx, cy = (x0 + x1 + x2 + x3) / 4, (y0 + y1 + y2 + y3) / 4
    top = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    bottom = ((x2 - x3) ** 2 + (y2 - y3) ** 2) ** 0.5
    if linear:
        return cx, cy, max(top, bottom)
    left = ((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5
    right = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
    return cx, cy, max(top, bottom, left, right)


def zxing_decode(gray: Any, zxingcpp: Any, formats: list[Any] | None = None, *,
                 offset: tuple[float, float] = (0.0, 0.0), scale: float = 1.0, **options: Any) -> list[Read]:
    """zxing-cpp's reads of ``gray``; positions mapped back by ``offset`` and ``scale``."""
    if formats:
        options["formats"] = formats
    found = zxingcpp.read_barcodes(gray, text_mode=zxingcpp.TextMode.Plain, **options)
    out = []
    for barcode in found:
        if not barcode.valid or not barcode.text or str(barcode.format) in _QR_KIN:
            continue
        name, text = normalize(from_zxing(str(barcode.format), barcode.symbology_identifier), barcode.text)
        p = barcode.position
        corners = [(q.x, q.y) for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)]
        if name == "UPCE" and not quiet_on_both_ends(gray, corners, _UPCE_MODULES):
            continue
        points = [(offset[0] + x / scale, offset[1] + y / scale) for x, y in corners]
        cx, cy, length = _place(points, linear=name not in _MATRIX_NAMES)
        out.append(Read(text, name, "zxing-cpp", cx, cy, length))
    return out


def quiet_on_both_ends(gray: Any, corners: list[tuple[float, float]], modules: int) -> bool:
    """Whether a 1D symbol of ``modules`` modules, first bar to last (zxing-cpp's quad), has
    quiet zones past both ends nearly as light as the paper between its bars.

    A short symbol read where a longer one goes on (a UPC-E in the bars of a bigger symbol,
    or running into a dark thumb) has bars or something darker past its end guard; a real
    one has paper. A place past the edge of the image is not seen, so it is not quiet. This
    is not what stops the left half of an EAN-13 under a light thumb (skin can look like
    paper): that reads as a number-system-1 UPC-E, never reported (camera_evidence).
    """
    import cv2
    import numpy as np

    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = corners
    left = np.array([(x0 + x3) / 2, (y0 + y3) / 2], np.float32)
    right = np.array([(x1 + x2) / 2, (y1 + y2) / 2], np.float32)
    length = float(np.hypot(*(right - left)))
    module = length / modules
    if module < 1.0:
        return False
    along = (right - left) / length
    across = np.array([-along[1], along[0]], np.float32)
    t = np.arange(-_QUIET_SEEN * module, length + _QUIET_SEEN * module, 0.5, dtype=np.float32)
    s = np.array([-3, -1.5, 0, 1.5, 3], np.float32) * module  # lines a few modules apart, along the bars
    xs = left[0] + along[0] * t[None, :] + across[0] * s[:, None]
    ys = left[1] + along[1] * t[None, :] + across[1] * s[:, None]
    lines = cv2.remap(gray, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    profile = np.median(lines.astype(np.float32), axis=0)
    inside = profile[(t >= 0) & (t <= length)]
    light, dark = float(np.percentile(inside, 90)), float(np.percentile(inside, 10))
    if light - dark < 16:
        return False
    bar = _QUIET_FROM * module
    ends = (profile[(t <= -bar)], profile[(t >= length + bar)])
    return all(float(np.percentile(end, 25)) >= light - _QUIET_LIGHT * (light - dark) for end in ends)


_UPCE_MODULES = 51  # first bar to last: start guard 3, six digits 42, end guard 6
_QUIET_FROM, _QUIET_SEEN = 1.5, 7.0  # modules past an end: the quiet zone looked at (UPC-E's is 7 and 9)
_QUIET_LIGHT = 0.3  # how much darker than the paper between bars, in parts of the bars' contrast

# zxing-cpp 3 reads QRCode as the whole QR family: its small kin are dropped here (see _ZXING_FORMATS).
_QR_KIN = frozenset({"Micro QR Code", "rMQR Code"})

_MATRIX_NAMES = frozenset({"QR", "GS1_QR", "DATAMATRIX", "GS1_DATAMATRIX", "PDF417", "AZTEC"})


def _zbar_scan(gray: Any, pyzbar: Any, symbols: list[Any] | None, rows_only: int) -> list[Any]:
    """``pyzbar.decode``; with ``rows_only=k``, zbar scans every k-th row and no column.

    pyzbar does not pass zbar's scan densities on, so this is its ``decode`` with the two
    settings added (the same calls, pyzbar 0.1.9). For an image whose bars stand upright
    and are smoothed along their length, columns read nothing.
    """
    if not rows_only or not hasattr(pyzbar, "_image_scanner"):  # another pyzbar: all rows and columns
        return pyzbar.decode(gray, symbols=symbols or None)
    from ctypes import c_void_p, cast

    z, config = pyzbar, pyzbar.ZBarConfig
    pixels = gray.tobytes()
    height, width = gray.shape[:2]
    with z._image_scanner() as scanner:
        if symbols:
            for symbol in set(z.ZBarSymbol).difference(symbols):
                z.zbar_image_scanner_set_config(scanner, symbol, config.CFG_ENABLE, 0)
            for symbol in symbols:
                z.zbar_image_scanner_set_config(scanner, symbol, config.CFG_ENABLE, 1)
        z.zbar_image_scanner_set_config(scanner, z.ZBarSymbol.NONE, config.CFG_X_DENSITY, 0)
        z.zbar_image_scanner_set_config(scanner, z.ZBarSymbol.NONE, config.CFG_Y_DENSITY, rows_only)
        with z._image() as img:
            z.zbar_image_set_format(img, z._FOURCC["L800"])
            z.zbar_image_set_size(img, width, height)
            z.zbar_image_set_data(img, cast(pixels, c_void_p), len(pixels), None)
            if z.zbar_scan_image(scanner, img) < 0:
                return []
            return list(z._decode_symbols(z._symbols_for_image(img)))


def zbar_decode(gray: Any, pyzbar: Any, symbols: list[Any] | None = None, *,
                offset: tuple[float, float] = (0.0, 0.0), scale: float = 1.0, rows_only: int = 0) -> list[Read]:
    """zbar's reads of ``gray`` (zbar gives text as UTF-8), positions mapped back."""
    import cv2
    import numpy as np

    out = []
    for symbol in _zbar_scan(gray, pyzbar, symbols, rows_only):
        try:
            text = symbol.data.decode("utf-8")
        except UnicodeDecodeError:
            text = symbol.data.decode("latin-1")
        if not text:
            continue
        name, text = normalize(from_zbar(symbol.type), text)
        (cx, cy), (w, h), _ = cv2.minAreaRect(np.array([(q.x, q.y) for q in symbol.polygon], np.float32))
        out.append(Read(text, name, "zbar", offset[0] + cx / scale, offset[1] + cy / scale, max(w, h) / scale))
    return out


class FrameDecoder:
    """The two decoders behind one call. Use ``zxing=False`` / ``zbar=False`` to measure one alone."""

    def __init__(self, *, zxing: bool = True, zbar: bool = True,
                 symbologies: Iterable[str] = DEFAULT_SYMBOLOGIES, locate: bool = True) -> None:
        import cv2

        import numpy as np

        self._cv2, self._np = cv2, np
        self.symbologies = frozenset(symbologies)
        self._zxing = self._zbar = None
        self._symbols_linear: list[Any] = []
        if zxing:
            import zxingcpp

            self._zxing = zxingcpp
            self._formats = zxing_formats(zxingcpp, self.symbologies)
        if zbar and any(s in _ZBAR_SYMBOLS for s in self.symbologies):
            try:
                from pyzbar import pyzbar

                self._zbar = pyzbar
                self._symbols = zbar_symbols(pyzbar, self.symbologies)
                self._symbols_linear = zbar_symbols(pyzbar, self.symbologies - MATRIX_SYMBOLOGIES)
            except (ImportError, OSError) as exc:  # pyzbar raises ImportError without libzbar0
                log.warning("pyzbar unavailable (%s): decoding with zxing-cpp alone; "
                            "1D codes need several frames to be confirmed", exc)
        if self._zxing is None and self._zbar is None:
            raise RuntimeError("no barcode decoder available (install zxing-cpp, or pyzbar and libzbar0)")
        self._clahe = cv2.createCLAHE(clipLimit=2.5, tileGridSize=(4, 4))
        # Beyond what both decoders read on the whole frame: OpenCV's 1D barcode detector finds
        # where bars are even when neither decoder can read them there, for a cleaned-up crop.
        linear = any(s not in MATRIX_SYMBOLOGIES for s in self.symbologies)
        self._detector = cv2.barcode.BarcodeDetector() if locate and linear else None
        if self._detector is not None:
            # Where bars are shows at half a 720p frame's size as well as at OpenCV's default
            # (512 px), at a third of the cost; the crop it gives is cut from the full frame.
            self._detector.setDownsamplingThreshold(_LOCATE_AT)

    @property
    def decoders(self) -> list[str]:
        return [n for n, lib in (("zxing-cpp", self._zxing), ("zbar", self._zbar)) if lib is not None]

    # -- the decoders, whole frame or a crop ---------------------------------------------
    def _zx(self, gray: Any, offset: tuple[float, float] = (0.0, 0.0), scale: float = 1.0, *,
            upright: bool = False, whole: bool = False) -> list[Read]:
        if self._zxing is None:
            return []
        # Light-on-dark codes are not tried: it costs a third of zxing-cpp's time on every
        # frame, and member cards, vouchers and wallet passes are printed dark on light.
        # Nor columns (try_rotate) on the whole frame, half its cost: a 1D code held across
        # is found by the detector and read turned upright; matrix codes read at any angle.
        return zxing_decode(gray, self._zxing, self._formats, offset=offset, scale=scale, try_invert=False,
                            try_rotate=not (upright or whole))

    def _zb(self, gray: Any, offset: tuple[float, float] = (0.0, 0.0), scale: float = 1.0, *,
            upright: bool = False) -> list[Read]:
        if self._zbar is None:
            return []
        rows_only = _UPRIGHT_ROWS if upright else 0
        return zbar_decode(gray, self._zbar, self._symbols, offset=offset, scale=scale, rows_only=rows_only)

    def decode(self, gray: Any, confirmed: Iterable[Read] = ()) -> list[Read]:
        """Every read in ``gray``. ``confirmed``: codes already confirmed and still in view
        (``Confirmer.in_view``); a read of one at the same place gets no second opinion."""
        reads = self._zx(gray, whole=True)
        located = self._located(gray, reads) if self._detector is not None else None
        if located is None and not reads:
            reads = self._zb(gray)  # no bars located and nothing read: the detector misses some codes
        else:
            reads += located or []
            if self._symbols_linear and reads and all(r.matrix for r in reads):
                # Only a phone's QR code read (the detector may see its modules as bars): a card
                # held beside it may still be there. zbar looks for 1D codes along every other
                # row, at a quarter of its cost.
                reads += zbar_decode(gray, self._zbar, self._symbols_linear, rows_only=_BESIDE_ROWS)
        if len(self.decoders) == 2:
            confirmed = list(confirmed)
            reads += self._verify(gray, reads, confirmed)
            reads += self._contest(gray, reads, confirmed)
        return reads

    def _located(self, gray: Any, known: list[Read]) -> list[Read] | None:
        """Reads in the places the detector sees bars and no ``known`` read lies, on cleaned-up
        crops; None: no bars seen anywhere. A frame may hold two codes (a card beside a phone):
        zxing-cpp reading one of them on the whole frame says nothing about the other."""
        cv2, np = self._cv2, self._np
        ok, quads = self._detector.detect(gray)
        if not ok or quads is None or not len(quads):
            return None
        out: list[Read] = []
        seen = bool(known)  # bars at a place already read count as seen
        for quad in itertools.islice(quads, _LOCATED_PLACES):
            (cx, cy), (w, h), _ = cv2.minAreaRect(np.asarray(quad, np.float32))
            place = Read("", "", "", cx, cy, max(w, h))
            if any(same_place(place, r) for r in known + out):
                continue  # read already, on the whole frame or at an overlapping place
            crop, origin = self._crop(gray, cx, cy, max(w, h) * _CROP_REACH)
            if crop is not None:  # else a speck too small to be bars
                seen = True
                out += self._read_place(crop, origin)
        return out if seen else None

    def _read_place(self, crop: Any, origin: tuple[int, int]) -> list[Read]:
        # zxing-cpp has seen this place as it is, on the whole frame; zbar has not.
        views = _Views(self, crop)
        for decode, variants in ((self._zx, self._variants(views, plain=False)), (self._zb, self._variants(views))):
            for image, scale, upright in itertools.islice(variants, _LOCATED_VARIANTS):
                found = decode(image, origin, scale, upright=upright)
                if found:
                    return found
        return []

    def _crop(self, gray: Any, cx: float, cy: float, reach: float) -> tuple[Any, tuple[int, int]]:
        h, w = gray.shape[:2]
        x0, y0 = max(0, int(cx - reach)), max(0, int(cy - reach))
        x1, y1 = min(w, int(cx + reach) + 1), min(h, int(cy + reach) + 1)
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None, (x0, y0)
        return gray[y0:y1, x0:x1], (x0, y0)

    # -- second opinions -------------------------------------------------------------------
    def _verify(self, gray: Any, reads: list[Read], confirmed: list[Read]) -> list[Read]:
        """The other decoder's reads on a crop around each 1D read only one decoder made."""
        extra: list[Read] = []
        for r in reads:
            if r.matrix or any(o.decoder != r.decoder and o.key == r.key for o in reads + extra):
                continue
            if any(c.key == r.key and same_place(c, r) for c in confirmed):
                continue  # confirmed in an earlier frame, still there: debounced, not decoded again
            other = self._zb if r.decoder == "zxing-cpp" else self._zx
            extra += self._second_opinion(gray, r, other)
        return extra

    def _second_opinion(self, gray: Any, read: Read, decode: Callable[..., list[Read]]) -> list[Read]:
        reach = read.length * (_FRAGMENT_REACH if read.symbology in _FRAGMENT_PRONE else _CROP_REACH)
        if read.decoder == "zbar":
            reach *= 2  # zbar places a 1D symbol by the scan lines it decoded: maybe one end of it
        crop, origin = self._crop(gray, read.cx, read.cy, reach)
        if crop is None:
            return []
        found: list[Read] = []
        for image, scale, upright in self._variants(_Views(self, crop)):
            found += decode(image, origin, scale, upright=upright)
            if any(f.key == read.key for f in found):
                break  # agreement; a different answer goes on looking (it may be the whole of a fragment)
        return found

    def _contest(self, gray: Any, reads: list[Read], confirmed: list[Read]) -> list[Read]:
        """Other codes zbar reads at each unconfirmed EAN/UPC place, bars upright and smoothed:
        a place read as two codes says nothing (``resolve_frame``). A check digit is no second
        opinion against damage that both decoders read the same wrong way."""
        places: list[Read] = []
        for r in reads:
            if r.key[0] != "EAN/UPC" or any(same_place(r, p) for p in places):
                continue
            if any(c.key == r.key and same_place(c, r) for c in confirmed):
                continue
            places.append(r)
        other: list[Read] = []
        for r in places:
            reach = r.length * (_CONTEST_REACH * 2 if r.decoder == "zbar" else _CONTEST_REACH)
            crop, origin = self._crop(gray, r.cx, r.cy, reach)
            if crop is not None:
                image, scale, upright = _Views(self, crop).get(_CONTEST_VIEW)
                other += [o for o in self._zb(image, origin, scale, upright=upright) if o.key != r.key]
        return other

    def _variants(self, views: "_Views", *, plain: bool = True):
        """The crop as it is, then cleaned up for a second look, likeliest first."""
        names = ("plain",) if plain else ()
        names += ("upright_fine", "upright_coarse")
        if max(views.crop.shape) < 600:  # small modules: more pixels per module
            names += ("enlarged",)
        for name in names + ("equalised",):
            yield views.get(name)


class _Views:
    """A crop and its cleaned-up versions, each made at most once: ``get(name)`` ->
    (image, scale, upright). Upright images have their bars turned vertical."""

    def __init__(self, decoder: FrameDecoder, crop: Any) -> None:
        self.crop = crop
        self._cv2, self._np, self._clahe = decoder._cv2, decoder._np, decoder._clahe
        self._made: dict[str, tuple[Any, float, bool]] = {}
        self._upright: Any = None

    def get(self, name: str) -> tuple[Any, float, bool]:
        if name not in self._made:
            self._made[name] = self._make(name)
        return self._made[name]

    def _make(self, name: str) -> tuple[Any, float, bool]:
        cv2, crop = self._cv2, self.crop
        if name == "plain":
            return crop, 1.0, False
        if name == "upright_fine":
            return self._rectified(along=0.1, amount=2.0), 1.0, True
        if name == "upright_coarse":
            return self._rectified(along=0.25, amount=1.0), 1.0, True
        if name == "enlarged":
            return cv2.resize(crop, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC), 2.0, False
        return self._clahe.apply(cv2.GaussianBlur(crop, (0, 0), 1.0)), 1.0, False

    def _turned(self) -> Any:
        """The crop turned about its centre so that its bars stand upright (made once)."""
        if self._upright is None:
            cv2, np, crop = self._cv2, self._np, self.crop
            f = crop.astype(np.float32)
            gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
            angle = 0.5 * float(np.degrees(np.arctan2(2 * float((gx * gy).sum()),
                                                      float((gx * gx - gy * gy).sum()))))
            h, w = crop.shape[:2]
            turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            self._upright = cv2.warpAffine(crop, turn, (w, h), flags=cv2.INTER_CUBIC,
                                           borderMode=cv2.BORDER_REPLICATE)
        return self._upright

    def _rectified(self, *, along: float, amount: float) -> Any:
        """Bars turned upright, smoothed along their length (noise and partial damage average
        out), stretched to full contrast and sharpened across: what a 1D decoder reads best.
        Positions stay those of the crop: the turn is about its centre, so a read's centre moves
        little and its length not at all."""
        cv2 = self._cv2
        upright = self._turned()
        h = upright.shape[0]
        smooth = cv2.normalize(cv2.blur(upright, (1, max(3, int(h * along)))), None, 0, 255, cv2.NORM_MINMAX)
        across = cv2.GaussianBlur(smooth, (0, 0), sigmaX=2.0, sigmaY=0.1)
        return cv2.addWeighted(smooth, 1.0 + amount, across, -amount, 0)

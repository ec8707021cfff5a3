"""Slip render times against PRODUCT.md's targets (Latin text <= 20 ms, Persian
raster <= 150 ms), and what each slip costs on the wire.

A render is the whole path a print job takes: slip data -> document -> ESC/POS
bytes for the profile and paper. The PNG preview (bytes -> picture) is timed
too, as the preview printer and `GET /v1/slips/{id}.png` add it.

``wire`` counts the bytes of every slip kind (sale, redemption, return) in
every language (pl, fa, en) on a few printers, and the seconds they take to
reach the printer over a serial line at 9600, 38400 and 115200 baud (8N1: ten
bits a byte). That is transmission only: the printer's own print speed is not
modelled (a thermal head prints a slip in well under a second at 115200, but
at 9600 baud the line is what the cashier waits for). ``before`` holds the same
counts measured at commit 4f06f75, before raster was cut to its ink
(``slips-before.json``), and ``ratio`` is now / before.
Run alone with `python -m bench.slips`; `make bench` includes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from posd.core.slip import build_slip  # noqa: E402
from posd.drivers.escpos_png import escpos_to_png  # noqa: E402
from posd.drivers.escpos_render import dots_for, profile_code_pages, render_slip  # noqa: E402
from tests.support.slip_samples import sample  # noqa: E402

TARGETS_MS = {"latin_text": 20.0, "persian_raster": 150.0}
BAUDS = (9600, 38400, 115200)
BITS_PER_BYTE = 10  # 8N1: a start bit, 8 data bits, a stop bit
# Printers that differ in what goes as text or image: an Epson with native codes
# and Polish pages (80 and 58 mm), a Star, a 58 mm clone drawing its codes as
# images, and the bare profile (CP437 only, no native codes).
WIRE_PRINTERS = (("TM-T88V", 80), ("TM-T88V", 58), ("TSP600", 80), ("NT-5890K", 58), ("simple", 80))
BEFORE = Path(__file__).with_name("slips-before.json")
CASES = {"latin_text": ("pl", "TM-T88V", 80), "persian_raster": ("fa", "TM-T88V", 80),
         "latin_text_58": ("en", "NT-5890K", 58), "persian_raster_58": ("fa", "NT-5890K", 58)}


def timed(fn: Callable[[], Any], rounds: int) -> dict[str, float]:
    fn()  # the first call loads fonts and profiles: a daemon does that once
    ms = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    return {"n": rounds, "p50_ms": round(statistics.median(ms), 3),
            "p99_ms": round(ms[min(rounds - 1, int(0.99 * (rounds - 1) + 0.5))], 3), "max_ms": round(ms[-1], 3)}


def wire(printers: tuple[tuple[str, int], ...] = WIRE_PRINTERS) -> dict[str, Any]:
    """Bytes and seconds on a serial line per printer, kind and language."""
    before = json.loads(BEFORE.read_text()) if BEFORE.exists() else {}
    out: dict[str, Any] = {}
    for profile, width in printers:
        for kind in ("sale", "redemption", "return"):
            for locale in ("pl", "fa", "en"):
                key = f"{profile}/{width}/{kind}/{locale}"
                n = len(render_slip(build_slip(sample(kind), locale), profile, width))
                row: dict[str, Any] = {"bytes": n, "seconds": seconds(n)}
                if key in before:
                    row |= {"before": {"bytes": before[key], "seconds": seconds(before[key])},
                            "ratio": round(n / before[key], 3)}
                out[key] = row
    return out


def seconds(n: int) -> dict[str, float]:
    return {str(baud): round(n * BITS_PER_BYTE / baud, 2) for baud in BAUDS}


def run(rounds: int = 50) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name, (locale, profile, width) in CASES.items():
        # A fresh name each round: nothing is cached per slip in a real lane either.
        counter = iter(range(10**9))

        def render() -> bytes:
            data = sample("sale", name=f"Łukasz Żółkiewski {next(counter)}")
            return render_slip(build_slip(data, locale), profile, width)

        data = render()
        report[name] = {"render": timed(render, rounds), "bytes": len(data),
                        "png": timed(lambda: escpos_to_png(data, dots_for(profile, width),
                                                           code_pages=profile_code_pages(profile)), rounds)}
    report["wire"] = wire()
    report["targets"] = {
        f"slip_render_{k}_p99_ms": {"target": t, "measured": report[k]["render"]["p99_ms"],
                                    "met": report[k]["render"]["p99_ms"] <= t}
        for k, t in TARGETS_MS.items()
    }
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    from bench.common import emit

    return emit(run(args.rounds), args.out)


if __name__ == "__main__":
    raise SystemExit(main())

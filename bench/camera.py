"""Camera decode benchmark: zxing-cpp alone, pyzbar alone, their union and posd's pipeline, one core.

Sets of perturbed 1280x720 clips (``tests/support/camera_sets.py``): ``dev``
(the seeds the tests use), ``held_out`` (seeds nothing was ever tuned on),
``stills`` (single photos: one frame each), and ``held_out_retail`` (the
held-out clips with UPC-E and EAN-8 enabled too, where fragments lurk).
Per set and method: codes read (a code counts once per clip), false reads
(codes reported that were not in the clip), ms per frame (median, p90).
The libraries alone count every read of every frame (what a pipeline
without confirmation would report); the pipeline counts what reaches
``on_data``. ``pipeline_without_locating`` skips the detector step: the
difference is what goes beyond the union. zxing-cpp alone on the same
frames is the floor the pipeline's ms/frame is compared with; ``empty``
frames (no code in view: an idle lane) are timed apart.

Targets (PRODUCT.md): pipeline rate >= union, 0 false reads, median <= 33 ms/frame.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import zxingcpp  # noqa: E402
from pyzbar import pyzbar  # noqa: E402

from posd.drivers.camera_decode import FrameDecoder, zbar_decode, zbar_symbols, zxing_decode, zxing_formats  # noqa: E402
from posd.drivers.camera_evidence import DEFAULT_SYMBOLOGIES, Confirmer, resolve_frame  # noqa: E402
from tests.support.camera_sets import DEV_SEEDS, HELD_OUT_SEEDS, STILL_SEEDS, clip_set  # noqa: E402

TARGET_MEDIAN_MS = 33.0
RETAIL = DEFAULT_SYMBOLOGIES | {"ean8", "upce", "datamatrix"}
LANE = DEFAULT_SYMBOLOGIES | {"datamatrix"}


def library(decode):
    """A library alone: every read of every frame is reported."""
    def run(frames):
        out, times = set(), []
        for frame in frames:
            t0 = time.perf_counter()
            out |= {r.text for r in decode(frame)}
            times.append((time.perf_counter() - t0) * 1000)
        return out, times
    return run


def pipeline(decoder: FrameDecoder):
    """The scanner's path: decode, resolve, confirm over the clip's frames (30 fps clip time)."""
    def run(frames):
        confirmer, out, times = Confirmer(len(decoder.decoders)), set(), []
        for n, frame in enumerate(frames):
            t0 = time.perf_counter()
            confirmed = confirmer.feed(resolve_frame(decoder.decode(frame)), n / 30.0)
            times.append((time.perf_counter() - t0) * 1000)
            out |= {r.text for r in confirmed}
        return out, times
    return run


def measure(clips, methods: dict) -> dict:
    results: dict = {}
    reads: dict = {}
    for name, run in methods.items():
        hits = false = 0
        times: list[float] = []
        by_case: dict = defaultdict(lambda: [0, 0])
        got = []
        for clip in clips:
            truth = {text for _, text in clip.codes}
            found, t = run(clip.frames)
            times += t
            got.append(found & truth)
            hits += len(found & truth)
            false += len(found - truth)
            by_case[clip.scenario][0] += len(found & truth)
            by_case[clip.scenario][1] += len(truth)
        times.sort()
        reads[name] = got
        results[name] = {"decoded": hits, "false_reads": false, "rate": _rate(hits, clips),
                         "median_ms": round(statistics.median(times), 2),
                         "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2),
                         "by_scenario": {k: f"{a}/{b}" for k, (a, b) in sorted(by_case.items())}}
    union = [a | b for a, b in zip(reads["zxing_cpp"], reads["pyzbar"])]
    decoded = sum(map(len, union))
    results["union"] = {"decoded": decoded, "rate": _rate(decoded, clips)}
    results["union_codes_missed_by_pipeline"] = sum(len(u - p) for u, p in zip(union, reads["pipeline"]))
    codes = sum(len(c.codes) for c in clips)
    floor = results["zxing_cpp"]["median_ms"]
    return {"clips": len(clips), "codes": codes, "frames": sum(len(c.frames) for c in clips),
            **results, "pipeline_median_vs_zxing_alone": round(results["pipeline"]["median_ms"] / floor, 2)}


def _rate(hits: int, clips) -> float:
    return round(hits / max(1, sum(len(c.codes) for c in clips)), 4)


def methods_for(symbologies) -> dict:
    formats = zxing_formats(zxingcpp, symbologies)
    symbols = zbar_symbols(pyzbar, symbologies)
    return {
        "zxing_cpp": library(lambda f: zxing_decode(f, zxingcpp, formats)),
        "pyzbar": library(lambda f: zbar_decode(f, pyzbar, symbols)),
        "pipeline": pipeline(FrameDecoder(symbologies=symbologies)),
        "pipeline_without_locating": pipeline(FrameDecoder(symbologies=symbologies, locate=False)),
    }


def empty_frames(n: int) -> dict:
    """ms/frame with no code in view: the counter, a hand, an idle lane."""
    rng = np.random.default_rng(11)
    frames = []
    for _ in range(n):
        small = rng.integers(60, 200, (720 // 16, 1280 // 16), dtype=np.uint8)
        frame = cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC)
        frames.append(np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8))
    out = {}
    for name, run in methods_for(LANE).items():
        _, times = run(frames)
        times.sort()
        out[name] = {"median_ms": round(statistics.median(times), 2), "p90_ms": round(times[int(0.9 * (n - 1))], 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/camera.json")
    parser.add_argument("--clips", type=int, default=150, help="clips per set")
    parser.add_argument("--frames", type=int, default=4, help="frames per clip")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    cv2.setNumThreads(1)
    held_out = clip_set(HELD_OUT_SEEDS, args.clips, args.frames)
    sets = {
        "dev": (clip_set(DEV_SEEDS, args.clips, args.frames), LANE),
        "held_out": (held_out, LANE),
        "stills": (clip_set(STILL_SEEDS, args.clips, 1), LANE),
        "held_out_retail": (held_out, RETAIL),
    }
    report: dict = {"size": "1280x720", "cores": 1, "frames_per_clip": args.frames, "sets": {}}
    for name, (clips, symbologies) in sets.items():
        report["sets"][name] = {"symbologies": sorted(symbologies), **measure(clips, methods_for(symbologies))}
    report["empty_frames"] = empty_frames(40)
    report["targets"] = {
        name: {"false_reads_0": s["pipeline"]["false_reads"] == 0,
               "rate_ge_union": s["pipeline"]["decoded"] >= s["union"]["decoded"],
               "median_le_33ms": s["pipeline"]["median_ms"] <= TARGET_MEDIAN_MS}
        for name, s in report["sets"].items()
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, s in report["sets"].items():
        print(f"camera {name}: {s['clips']} clips, {s['codes']} codes, {s['frames']} frames; "
              f"union {s['union']['rate']:.1%}")
        for method in ("zxing_cpp", "pyzbar", "pipeline_without_locating", "pipeline"):
            r = s[method]
            print(f"  {method:<26} rate {r['rate']:.1%} ({r['decoded']})  false {r['false_reads']:>3}  "
                  f"median {r['median_ms']} ms/frame  p90 {r['p90_ms']} ms")
    print(f"camera empty frames: {report['empty_frames']}")
    print(f"camera targets met: {report['targets']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Camera decode benchmark: zxing-cpp alone, pyzbar alone and our pipeline, one core.

Generates the perturbed 1280x720 set (QR, EAN-13, Code 128, DataMatrix x
clean, blur, rotation, perspective, low contrast, noise, combined x two
strengths; ``tests/support/clips.py``), decodes every frame with each, and
writes decode rate and ms/frame (median, p90) to a JSON report, compared
with PRODUCT.md's targets: pipeline rate >= the union of the two decoders
alone, median <= 33 ms/frame.
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
import zxingcpp  # noqa: E402
from pyzbar import pyzbar  # noqa: E402

from posd.drivers.camera_decode import FrameDecoder, zbar_decode, zxing_decode  # noqa: E402
from tests.support.clips import sample_set  # noqa: E402

TARGET_MEDIAN_MS = 33.0


def measure(samples, decode) -> dict:
    times, hits, by_kind = [], [], defaultdict(lambda: [0, 0])
    for s in samples:
        t0 = time.perf_counter()
        found = decode(s.image)
        times.append((time.perf_counter() - t0) * 1000)
        ok = any(d.text == s.text for d in found)
        hits.append(ok)
        key = f"{s.symbology}/{s.perturbation.split('@')[0]}"
        by_kind[key][0] += ok
        by_kind[key][1] += 1
    times.sort()
    return {"decoded": sum(hits), "frames": len(samples), "rate": round(sum(hits) / len(samples), 4),
            "median_ms": round(statistics.median(times), 2), "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2),
            "hits": hits, "by_case": {k: f"{a}/{b}" for k, (a, b) in sorted(by_kind.items())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/camera.json")
    parser.add_argument("--per-case", type=int, default=3)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    cv2.setNumThreads(1)
    samples = sample_set(args.per_case)
    pipeline = FrameDecoder()
    for s in samples[:5]:  # warm up caches and lazy initialisation
        pipeline.decode(s.image)
    results = {
        "zxing_cpp": measure(samples, lambda img: zxing_decode(img, zxingcpp)),
        "pyzbar": measure(samples, lambda img: zbar_decode(img, pyzbar)),
        "pipeline": measure(samples, pipeline.decode),
    }
    union = sum(a or b for a, b in zip(results["zxing_cpp"]["hits"], results["pyzbar"]["hits"]))
    for r in results.values():
        r.pop("hits")
    report = {
        "frames": len(samples), "size": "1280x720", "cores": 1,
        "union_rate": round(union / len(samples), 4),
        **results,
        "targets": {
            "pipeline_rate_ge_union": results["pipeline"]["decoded"] >= union,
            "pipeline_median_le_33ms": results["pipeline"]["median_ms"] <= TARGET_MEDIAN_MS,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name in ("zxing_cpp", "pyzbar", "pipeline"):
        r = report[name]
        print(f"camera {name:<10} rate {r['rate']:.1%} ({r['decoded']}/{r['frames']})  "
              f"median {r['median_ms']} ms/frame  p90 {r['p90_ms']} ms")
    print(f"camera union of both: {report['union_rate']:.1%}; targets met: {report['targets']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

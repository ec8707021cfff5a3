"""Named crash points for the crash harness: die exactly here, like a power cut.

`POSD_CRASH_AT=name[,name...]` (optionally `name@N`: on the Nth time) makes the
process SIGKILL itself when it reaches that point. Unset in production, so the
check is one dict lookup on a frozen set.
"""

from __future__ import annotations

import os
import signal
import threading

_SPEC = os.environ.get("POSD_CRASH_AT", "")
_POINTS: dict[str, int] = {}
for item in filter(None, (p.strip() for p in _SPEC.split(","))):
    name, _, nth = item.partition("@")
    _POINTS[name] = int(nth) if nth.isdigit() else 1
_counts: dict[str, int] = {}
_lock = threading.Lock()

KNOWN = (
    "after_commit_before_answer",  # the sale is durable, the POS never heard back
    "after_central_applied_before_ack",  # central has the batch, the lane has not marked it
    "mid_batch",  # the batch is on the wire
    "before_print_send_commit",  # a print job taken (a read), the printer ready, nothing committed or sent
    "after_print_send_commit",  # the job is durably 'sending', no byte of it has left
    "after_print_before_mark",  # the slip left for the printer, the job is not marked printed
    "after_authorised_before_commit",  # central approved (and reserved) a burn, the lane has not recorded it
)


def crash_point(name: str) -> None:
    if not _POINTS or name not in _POINTS:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == _POINTS[name]
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)

"""The signals that stop posd, and any of them that came before the daemon's loop listens.

``posd run`` spends its first moments importing the daemon and opening the ledger (a migration can
take longer) before its event loop takes SIGTERM, SIGINT and SIGHUP. A stop in that window used to
kill it with no word in the log (exit 143): it is kept here instead, and the daemon stops cleanly
as soon as it can (exit 0)."""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_asked: list[int] = []


def _keep(signum: int, _frame: FrameType | None) -> None:
    _asked.append(signum)


def keep_early_stops() -> None:
    """From now until the loop's own handlers replace these, a stop signal is kept, not fatal."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _keep)


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def stops_unwind() -> None:
    """A stop signal ends this command as an exception would: its cleanup (``finally``) runs, where the
    default action ends the process at once and leaves what it was writing (a backup's hidden copy)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)


def early_stop() -> str | None:
    """The name of the first stop signal kept, if one came."""
    return signal.Signals(_asked[0]).name if _asked else None

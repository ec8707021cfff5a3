"""Log lines for journald and for a terminal.

Under systemd, stderr is a stream to journald, which sets ``JOURNAL_STREAM``
to that stream's ``device:inode``. Each line then starts with its sd-daemon
priority prefix (``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>``
debug; sd-daemon(3)), which journald strips and stores as the entry's
priority, so ``journalctl -u posd -p err`` finds the errors; journald adds
the time. Every line of a multi-line message carries the prefix, so a
traceback is one priority, not one error line and the rest as info.
Anywhere else (a terminal, a test's log file) lines carry the time instead.

posd's lines are short and carry no member data and never card data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import TextIO

# sd-daemon(3): SD_ERR, SD_WARNING, SD_NOTICE, SD_INFO, SD_DEBUG
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"


def priority(levelno: int) -> int:
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    """``<N>`` before every line of a record, N its syslog priority."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])


def journal_stream(stream: TextIO, env: dict[str, str] | None = None) -> bool:
    """Is ``stream`` the journald stream systemd named in JOURNAL_STREAM (not just inherited by a child)?"""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


@contextlib.contextmanager
def command_logging(level: str, stream: TextIO | None = None) -> Iterator[None]:
    """The root logger for one ``posd`` command: its lines go to ``stream`` (stderr, as it is now) at
    ``level`` while the command runs, and the logger is as it was when the command returns.

    ``posd.cli.main`` also runs inside other programs (the tests call it): a handler left behind
    would keep the stream it was given, and the next line some thread logs, after that program
    closed the stream, would end in "--- Logging error ---" instead of anywhere useful."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if journal_stream(stream) else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    before, level_before = root.handlers[:], root.level
    for old in before:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    try:
        yield
    finally:
        for added in root.handlers[:]:  # ours, and any a library added meanwhile
            root.removeHandler(added)
        handler.close()  # the handler only: the stream is not ours to close
        for old in before:
            root.addHandler(old)
        root.setLevel(level_before)

"""``posd`` with the loop guard installed, as the tests' LaneProcess runs it.

    python -m tests.support.guarded_posd run --config FILE

The daemon is the real one; every blocking call on its event loop is written
to stderr as a ``LOOP_GUARD`` line (tests.support.loop_guard), which the test
that started it turns into a failure.
"""

import sys

from tests.support import loop_guard

loop_guard.install(report=sys.stderr)

from posd.cli import main  # noqa: E402  (after the guard, so every module sees the guarded calls)

raise SystemExit(main(sys.argv[1:]))

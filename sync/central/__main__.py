"""``python -m posd.sync.central``: the same as ``posd central``."""

import sys

from posd.sync.central.cli import main

sys.exit(main(sys.argv[1:]))

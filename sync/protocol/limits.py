"""The protocol's numbers: what a request may carry and how far clocks may drift.

Both sides read them from here; docs/sync-protocol.md states the same figures.
"""

from __future__ import annotations

import re

TIMESTAMP_TOLERANCE_S = 300  # a signed request is good this long either side of central's clock

MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 1_000_000  # uncompressed JSON of the whole batch
MAX_ID_LEN = 128  # batch_id, event_id, member_id, transaction_id
MAX_CODE_LEN = 64  # a voucher or coupon code
MAX_AUTHORISATION_ID_LEN = 256  # voucher_use:{code}:{transaction_id}: a 64-character code and a 128-character id
MAX_POINTS = 10**12  # far above any real delta, far below SQLite's int64
MAX_SEQ = 2**62
MAX_MEMBER_PAGE = 1000  # members per page of the change feed, whatever limit the lane asks for

LANE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # lane ids in URLs, incarnations (L01.2) included

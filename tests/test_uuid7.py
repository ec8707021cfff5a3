"""The UUIDv7 generator behind event and outbox ids (sync/protocol/ids.py)."""

import time
import uuid

from sync.protocol.ids import UuidV7, hyphenated


def test_ids_ascend_are_version_7_and_carry_fresh_random_bits_each_millisecond():
    gen, other = UuidV7(), UuidV7()
    values: list[int] = []
    deadline = time.monotonic() + 10
    while len({v >> 80 for v in values}) < 20 and time.monotonic() < deadline:  # ids over 20 milliseconds at least
        values.extend(gen.take(3))
    assert len({v >> 80 for v in values}) >= 20
    assert values == sorted(values) and len(set(values)) == len(values)
    parsed = [uuid.UUID(hyphenated(v)) for v in values]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    firsts = {}  # per millisecond: its random field and where its counter started
    for v in values:
        firsts.setdefault(v >> 80, (v >> 64 & 0xFFF, v & ((1 << 62) - 1)))
    fields, starts = {f for f, _ in firsts.values()}, {s for _, s in firsts.values()}
    assert len(fields) > 10 and len(starts) == len(firsts)  # 12 random bits; 61 random bits
    assert all(s < 1 << 61 for s in starts)  # in the lower half: room to count within the millisecond
    assert not set(values) & set(other.take(1000))

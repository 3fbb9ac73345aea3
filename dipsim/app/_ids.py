"""DIP transaction ids: UUID-shaped, unique across restarts, cheap to make in bulk."""

from __future__ import annotations

import os


def _id_prefix() -> str:
    h = os.urandom(10).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-"


ID_PREFIX = _id_prefix()  # random per process: ids stay unique across restarts
ID_MASK = (1 << 48) - 1
_id_next = [int.from_bytes(os.urandom(3), "big") << 24]


def take_transaction_ids(count: int) -> int:
    """Reserve ``count`` consecutive ids; ``transaction_id(base + i)`` is the i-th."""
    base = _id_next[0]
    _id_next[0] = base + count
    return base


def transaction_id(number: int) -> str:
    return f"{ID_PREFIX}{number & ID_MASK:012x}"


def new_transaction_id() -> str:
    """A unique UUID-shaped (version 4 layout) id: a random per-process prefix and a 48-bit
    counter, far cheaper than ``str(uuid.uuid4())`` per message."""
    return transaction_id(take_transaction_ids(1))

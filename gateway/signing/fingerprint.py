"""SHA-256 certificate fingerprints as operators write them, normalised one way everywhere.

Dependency-free so the configuration can validate pins without loading cryptography.
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdef")


def normalise_fingerprint(value: str) -> str:
    """Accept ``AB:CD:...``, ``ab cd ...`` or ``abcd...``; return lower-case hex without
    separators. Raises ``ValueError`` naming the value when it is not 64 hex digits."""
    cleaned = value.replace(":", "").replace(" ", "").strip().lower()
    if len(cleaned) != 64 or not set(cleaned) <= _HEX:
        raise ValueError(f"{value!r} is not a SHA-256 fingerprint (64 hex digits)")
    return cleaned

"""The outcome writer's partitioning: Kafka's murmur2, as aiokafka's default partitioner."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from gateway.egress.writer import murmur2


def test_murmur2_matches_aiokafka_for_every_tail_length() -> None:
    rng = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"meter-123456", "clé".encode()]
    keys += [rng.randbytes(rng.randint(0, 64)) for _ in range(2000)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key) & 0x7FFFFFFF, key


def test_murmur2_known_values() -> None:
    # the Java client's Utils.murmur2 test vectors (toPositive applied)
    assert murmur2(b"21") == -973932308 & 0x7FFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0x7FFFFFFF
    assert murmur2(b"a-little-bit-long-string") == -985981536 & 0x7FFFFFFF

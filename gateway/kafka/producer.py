"""The gateway's producer: aiokafka's, which gives back the sequence numbers of a batch the
broker refused for good.

An idempotent producer numbers each partition's records; the broker appends a batch only if
it starts where the last one ended. aiokafka takes a batch's numbers when it sends the batch
and never gives them back, so a batch the broker refuses outright (larger than the topic's
``max.message.bytes``, a topic the producer may not write) leaves a gap, and the broker then
refuses every later batch for that partition with ``OutOfOrderSequenceNumber`` until the
process restarts (aio-libs/aiokafka#1017). One dead letter too large for its topic stopped
every later write to that partition, the value-less copy written in its place included.

Here the refused batch's numbers are handed back, as the next batch's: only for a batch that
failed on its first and only send (one sent again may have been appended before a leader
failed), and only if they are still the partition's last ones, which they are as aiokafka sends
one batch per partition at a time and settles a refused batch before the partition's next.

It wraps a private method of aiokafka's record accumulator (``_pop_batch``, where the numbers
are taken) and sets its transaction manager's numbers, so a newer aiokafka is checked at
construction (it fails loudly, not in a callback) and by ``tests/test_kafka_producer.py``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition

_log = structlog.get_logger(__name__)


class SequenceKeepingProducer(AIOKafkaProducer):  # type: ignore[misc]
    """An :class:`AIOKafkaProducer` whose refused batches leave no gap in the sequence
    numbers (idempotent, non-transactional producers; otherwise it changes nothing)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        manager = self._txn_manager
        if manager is not None and manager.transactional_id is None:
            accumulator = self._message_accumulator
            if not isinstance(getattr(manager, "_sequence_numbers", None), dict):
                raise RuntimeError(
                    "this aiokafka keeps its sequence numbers elsewhere: "
                    "gateway/kafka/producer.py needs updating for it"
                )
            accumulator._pop_batch = functools.partial(_pop_batch, accumulator._pop_batch, manager)


def _pop_batch(pop: Any, manager: Any, tp: TopicPartition) -> Any:
    """aiokafka's ``_pop_batch``; a batch sent the first time learns its numbers' range."""
    first = manager.sequence_number(tp)
    batch = pop(tp)
    after = manager.sequence_number(tp)
    if after != first:  # numbered now (a retried batch keeps the numbers it was given)
        batch.future.add_done_callback(
            functools.partial(_give_back, manager, batch, tp, first, after)
        )
    return batch


def _give_back(
    manager: Any,
    batch: Any,
    tp: TopicPartition,
    first: int,
    after: int,
    future: asyncio.Future[Any],
) -> None:
    if future.cancelled() or future.exception() is None:
        return
    # Taken from the queue once (``retry_count`` 1): it failed on its only send, with an error
    # the idempotent producer does not retry (the broker refused it: not appended), or it
    # expired before it was sent. A batch sent again may have been appended by a leader that
    # failed before answering, and then expired waiting for a new one: its numbers are spent.
    if batch.retry_count != 1:
        return
    if manager.sequence_number(tp) == after:
        manager._sequence_numbers[tp] = first
        _log.info("kafka_sequence_given_back", topic=tp.topic, partition=tp.partition)
    else:  # cannot happen while aiokafka sends one batch per partition at a time
        _log.warning("kafka_sequence_not_given_back", topic=tp.topic, partition=tp.partition)


__all__ = ["SequenceKeepingProducer"]

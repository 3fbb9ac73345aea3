"""The egress service: a consumer group on the outbound topics, feeding signed DIP submissions.

Imperative shell around the pure core (parse -> route/check -> batch -> gate -> send -> map
outcomes -> track offsets). What it adds is I/O and its guarantees:

* **At-least-once.** A record is final only when its result or dead-letter record has been
  acknowledged by Kafka; a partition's offset is committed only up to the first record that
  is not final (:class:`OffsetTracker`). A crash re-sends the unfinished tail, never loses one.
* **Per-key order.** A batch holding a key waits for every earlier unfinished batch holding
  that key (:class:`KeyGate`), including through retries and 413 splits.
* **Back-pressure.** No records are taken while ``egress.max_in_flight_messages`` records are
  not final (held, with fetched buffers kept; paused after a long hold so the group membership
  stays), nor more than a slice per loop turn (:class:`FlowControl`);
  ``max_concurrent_requests`` bounds requests.
* **No poison pills.** Every record reaches an outcome: unreadable, unroutable or refused
  records are dead-lettered with a reason; nothing on the record's content can raise here.
* **Rebalance and shutdown.** On revoke (aiokafka revokes the whole assignment) and on stop,
  open batches are sent, in-flight work gets ``shutdown_grace_seconds`` to finish, what is final
  is committed, and the rest is abandoned (it is re-read from the committed offset).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, OffsetAndMetadata, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from gateway.config import GatewayConfig
from gateway.dip.client import DipClient
from gateway.egress import metrics
from gateway.egress.batching import Batch, Batcher
from gateway.egress.diversion import Diversions, read_retry_headers, retry_backlog, retry_record
from gateway.egress.envelope import (
    OutboundMessage,
    RecordRef,
    Refusal,
    new_record_ref,
    parse_record,
)
from gateway.egress.fairness import FairSlots
from gateway.egress.flow import FlowControl, Step
from gateway.egress.holds import ClientHolds, Hold
from gateway.egress.offsets import OffsetTracker
from gateway.egress.ordering import KeyGate
from gateway.egress.oversize import refused_for_size, write_shedding_values
from gateway.egress.parked_tail import ParkedTail
from gateway.egress.parking import (
    UNPARKED_HEADER,
    Park,
    ParkedKeys,
    holds,
    new_park,
    parked_record,
    state_record,
    unparked_id,
)
from gateway.egress.poison import POISON, READ_SECONDS, SUSPECT, PoisonGuard, poisoned
from gateway.egress.reasons import DeadLetterReason
from gateway.egress.records import dead_letter, outcome_records
from gateway.egress.retry import RetryPolicy
from gateway.egress.routing import Prepared, Rejected, Router
from gateway.egress.sender import BatchSender, Delivery, Sent
from gateway.egress.writer import OutcomeWriter, OutRecord
from gateway.kafka.clients import create_consumer, create_producer
from gateway.kafka.topics import compacted_topic_uses, ensure_topics, gateway_topics
from gateway.ops import tracing
from gateway.ops.collector import tuned_for_streaming
from gateway.ops.health import Health
from gateway.ops.logging import LogLimiter, log_limited
from gateway.schema import default_registry
from gateway.signing.keystore import KeyStore

_log = structlog.get_logger(__name__)
_dead_letter_log = LogLimiter()

HEALTH_NAME = "egress"

_POLL_SECONDS = 0.1
#: While signing is congested, how often the loop looks whether it has cleared (a lingering
#: batch is then sent): about one RSA-4096 signature, so a thread is never idle much longer.
_CONGESTED_POLL_SECONDS = 0.002
_COMMIT_INTERVAL = 0.2
_COMMIT_GAP = 0.02
"""Least time between two prompt commits (see ``_commit_when_final``); what becomes final
meanwhile goes in the next one."""
_LAG_INTERVAL = 5.0
_PRODUCE_RETRY_SECONDS = 1.0
_INGEST_SLICE = 5000
"""Most records taken per consume-loop turn (see :mod:`gateway.egress.flow`): bounds the
event-loop work of one turn, so DIP answers and the webhook wait at most that long. At the
in-flight limit a turn takes only the refill (a fortieth of the window), which is what keeps
the pipeline evenly fed."""
_HOLD_SECONDS_MAX = 5.0
_DIVERSION_CHECK_SECONDS = 1.0
"""How often a diverting client that is no longer held looks whether its retry backlog is
empty (see :mod:`gateway.egress.diversion`)."""
_HOLD_LAPSE_SECONDS = 5.0
"""How long past its probe time a hold with nobody here to probe it is kept (see
``ClientHolds.lapse``)."""
_UNROUTED = "(none)"


class EgressFailed(RuntimeError):
    """Egress stopped because of an internal error: run() raises it after shutting down."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: EgressService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._service._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._service._load_poison_counts(assigned)  # before any record is fetched
        _log.info("egress_partitions_assigned", partitions=len(assigned))
        await self._service._on_assigned()


class EgressService:
    """Kafka -> DIP for every client, over the one shared :class:`DipClient`."""

    def __init__(
        self,
        config: GatewayConfig,
        keystore: KeyStore,
        dip: DipClient,
        health: Health | None = None,
    ) -> None:
        self._config = config
        self._keystore = keystore
        self._health = health
        egress = config.egress
        validates = egress.schema_validation or any(c.schema_validation for c in config.clients)
        self._router = Router(config, default_registry() if validates else None)
        # Retry topics (see gateway.egress.diversion): which client each belongs to.
        self._retry_clients = {c.topics.retry: c.name for c in config.clients if c.topics.retry}
        self._retry_topic = {name: topic for topic, name in self._retry_clients.items()}
        self._gate, self._batcher = self._fresh_batching()
        self._dip = dip
        policy = RetryPolicy.from_settings(egress)
        weights = {c.name: c.weight for c in config.clients}
        self._holds = ClientHolds(
            policy, auth_probe_seconds=egress.auth_probe_seconds, on_change=self._hold_changed
        )
        self._slots = FairSlots(egress.max_concurrent_requests, weights, on_change=_slots_changed)
        self._sender = BatchSender(
            dip,
            policy,
            duplicate_codes=egress.duplicate_message_codes,
            holds=self._holds,
            slots=self._slots,
            hold_budget_seconds=egress.hold_budget_seconds,
        )
        # Read at scrape time: nothing on the request path. Together they say whether the
        # slots or the connection pool is what bounds requests in flight.
        metrics.REQUESTS_WAITING.set_function(self._slots.waiting_total)
        metrics.REQUESTS_WAITING_FOR_CONNECTION.set_function(dip.waiting_for_connection)
        self._diversions = Diversions()
        # Diverting keeps order per (sender, key) only: with ordering across senders a held
        # client's batches keep their keys where they are (and hold the others' behind them).
        self._may_divert = egress.ordering_scope == "sender_key"
        # Cleared from a revocation until the new assignment's retry backlogs are read: fresh
        # records wait, so none overtakes what another replica diverted (see _on_assigned).
        self._backlog_known = asyncio.Event()
        # Key parking (see gateway.egress.parking): the clients that park keys, their parked
        # topics, and the released records seen at ingest (by position: their park id).
        self._parking = {
            c.name: c.topics.parked for c in config.clients if c.park_keys and c.topics.parked
        }
        self._parked = ParkedKeys()
        self._unparked: dict[tuple[str, int, int], str] = {}
        self._parked_tail: ParkedTail | None = None
        for client in config.clients:  # every client's series exists from the start
            metrics.client_hold(client.name, None)
            metrics.DIVERTING.labels(client.name).set(0)
            if client.park_keys:
                metrics.PARKED_KEYS.labels(client.name).set(0)
        # Per client, its share of the in-flight window: records read back from its retry topic
        # pause there (its retry partitions, the others' fetching goes on); and while the window
        # is full, a client above its share diverts its fresh records (see _crowding).
        total = sum(weights.values()) or 1
        self._share = {
            name: max(egress.max_in_flight_messages * w // total, egress.max_batch_messages)
            for name, w in weights.items()
        }
        self._retry_in_flight: dict[str, int] = {}
        self._fresh_in_flight: dict[str, int] = {}  # per client: from the outbound topics
        self._paused_retry: set[str] = set()  # clients whose retry partitions are paused
        self._retry_pauses_applied = False  # some are paused on the consumer (resume them)
        self._held_since: dict[tuple[str, int, int], float] = {}  # of retry records in flight
        self._tracker = OffsetTracker()
        self._poison = PoisonGuard(egress.poison_crash_limit)
        status_topic = config.kafka.status_outbound_topic
        self._topics = [*config.kafka.outbound_topics]
        # Per topic, what ``parse_record`` is told: True for a status-only topic, None (decide by
        # shape) for one that is both an outbound and the status topic; absent: DIP messages.
        self._status_kind: dict[str, bool | None] = {}
        if status_topic:
            if status_topic in self._topics:
                self._status_kind[status_topic] = None
            else:
                self._status_kind[status_topic] = True
                self._topics.append(status_topic)
        self._topics += list(self._retry_clients)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[int, Batch] = {}
        self._abandoning = False  # while cancelling: a finished batch releases nobody
        self._failure: EgressFailed | None = None  # a bug in a batch: stop, then raise this
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._writer: OutcomeWriter | None = None
        self._flow = FlowControl(
            egress.max_in_flight_messages,
            slice_records=_INGEST_SLICE,
            hold_seconds=min(_HOLD_SECONDS_MAX, config.kafka.max_poll_interval_ms / 10_000),
        )
        self._room = asyncio.Event()  # set when a held consumer may take records again
        self._last_commit = 0.0
        self._final = asyncio.Event()  # set when records became final: a commit is due
        # Readiness: a write of outcomes that keeps failing (a missing ACL, a broker that
        # refuses the records) stalls the partition's commits, so the pod is not ready.
        self._failing_writes = 0
        self._consuming = False
        self._commit_lock = asyncio.Lock()
        self._last_lag = 0.0
        self._fetched: dict[tuple[str, int], int] = {}
        self._tracing = False  # decided in run(): off, records' headers are never looked at
        self._traceparents: dict[tuple[str, int, int], bytes] = {}  # of batched records

    # ------------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and submit until ``stop`` is set, then shut down gracefully and return."""
        kafka = self._config.kafka
        if kafka.create_topics:
            await ensure_topics(kafka, gateway_topics(self._config))
            compacted = [use.topic for use in compacted_topic_uses(self._config)]
            if compacted:
                await ensure_topics(kafka, compacted, configs={"cleanup.policy": "compact"})
        tail_task = None
        if self._parking and kafka.parked_keys_topic:
            self._parked_tail = ParkedTail(
                kafka, kafka.parked_keys_topic, self._parked, self._parked_changed
            )
            tail_task = asyncio.create_task(self._parked_tail.run(), name="egress-parked-keys")
        # The writer's lanes pace the produce requests (outcome_produce_interval_ms): a
        # producer linger would hold each handed-over builder again.
        producer = create_producer(kafka, linger_ms=0)
        consumer = create_consumer(kafka)
        self._producer, self._consumer = producer, consumer
        self._writer = OutcomeWriter(
            producer, interval=self._config.egress.outcome_produce_interval_ms / 1000
        )
        self._tracing = tracing.enabled()
        await producer.start()
        try:
            if self._parked_tail is not None:
                # No record is taken before the parked keys are known. Not in _on_assigned:
                # aiokafka fetches for new partitions while the listener still runs.
                await self._parked_tail.loaded.wait()
            consumer.subscribe(self._topics, listener=_Listener(self))
            await consumer.start()
            committer = asyncio.create_task(self._commit_when_final(), name="egress-commit")
            diverter = asyncio.create_task(self._end_diversions(), name="egress-diversions")
            try:
                with tuned_for_streaming(self._config.egress.max_in_flight_messages):
                    self._consuming = True
                    self._set_health(True, "consuming")
                    _log.info("egress_started", topics=self._topics, group=kafka.consumer_group)
                    await self._consume(stop)
                    self._consuming = False
                    self._set_health(False, "stopping")
                    with contextlib.suppress(KafkaError):
                        consumer.pause(*consumer.assignment())
                    await self._drain(self._config.egress.shutdown_grace_seconds)
            finally:
                committer.cancel()
                diverter.cancel()
                await asyncio.gather(committer, diverter, return_exceptions=True)
                await self._abandon()
                await self._commit(force=True)
                await consumer.stop()
        finally:
            self._set_health(False, "stopped")
            if tail_task is not None:
                tail_task.cancel()
                await asyncio.gather(tail_task, return_exceptions=True)
            await self._writer.close()
            await producer.stop()
            self._producer = self._consumer = None
            self._writer = None
            _log.info("egress_stopped")
        if self._failure is not None:
            raise self._failure

    def _fresh_batching(self) -> tuple[KeyGate, Batcher]:
        """An empty key gate and a batcher that uses it (at start, and after abandoning)."""
        egress = self._config.egress
        gate = KeyGate()
        batcher = Batcher(
            egress.max_batch_messages,
            egress.max_batch_bytes,
            egress.linger_ms / 1000,
            gate,
            max_linger_seconds=egress.max_linger_seconds,
            per_sender=egress.ordering_scope == "sender_key",
            retry_topics=frozenset(self._retry_clients),
        )
        return gate, batcher

    def _set_health(self, ready: bool, detail: str) -> None:
        if self._health is not None:
            self._health.set(HEALTH_NAME, ready, detail)

    # -------------------------------------------------------------------------- consume

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        assert consumer is not None
        loop = asyncio.get_running_loop()
        while not stop.is_set() and self._failure is None:
            now = loop.time()
            congested = self._congested()
            deadline = self._batcher.next_deadline(congested)
            wait = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - now)
            if congested:
                # From its linger_ms on, a batch goes as soon as the congestion clears, which
                # nothing announces: look again every few milliseconds from then.
                lingered = self._batcher.next_deadline()
                if lingered is not None:
                    wait = min(wait, max(lingered - now, _CONGESTED_POLL_SECONDS))
            data = await self._fetch(consumer, max(wait, 0.0), now)
            if data:
                today = datetime.now(UTC).date()
                now = loop.time()
                consumed: dict[tuple[str, str], int] = {}
                for records in data.values():
                    for record in records:
                        self._ingest(record, today, now, consumed)
                    last = records[-1]
                    self._fetched[(last.topic, last.partition)] = last.offset + 1
                fresh = self._fresh_in_flight
                for (client, interface), count in consumed.items():
                    metrics.counters(client, interface).consumed.inc(count)
                    fresh[client] = fresh.get(client, 0) + count
                self._pace_retries()
            for batch in self._batcher.due(loop.time(), self._congested()):
                self._dispatch(batch)
            metrics.IN_FLIGHT.set(self._tracker.in_flight())
            if self._health is not None:
                self._health.beat(HEALTH_NAME)
            if now - self._last_lag >= _LAG_INTERVAL:
                self._last_lag = now
                self._export_lag()
                self._export_shares()
            if data:
                await asyncio.sleep(0)  # let answers and acknowledgements run between slices

    async def _fetch(self, consumer: AIOKafkaConsumer, wait: float, now: float) -> dict[Any, Any]:
        """One turn of flow control (:class:`FlowControl`): records to ingest, or none."""
        in_flight = self._tracker.in_flight()
        was_stopped = self._flow.stopped
        decision = self._flow.decide(in_flight, now)
        step = decision.step
        if self._flow.stopped != was_stopped:
            # Holds come and go with every refill at the limit: the gauge, not the log.
            metrics.PAUSED.set(1 if self._flow.stopped else 0)
        if step is Step.HOLD:
            # Sleep until finished work makes room (see _finished), or the next linger deadline.
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._room.wait()
            return {}
        timeout_ms = int(wait * 1000)
        if step is Step.PAUSE or step is Step.POLL:
            assignment = consumer.assignment()
            if assignment:
                consumer.pause(*assignment)  # again each turn: new assignments start unpaused
            if step is Step.PAUSE:
                _log.warning("egress_fetch_paused", in_flight=in_flight, limit=self._flow.limit)
            data: dict[Any, Any] = await consumer.getmany(timeout_ms=timeout_ms)
            return data
        if step is Step.RESUME:
            consumer.resume(*consumer.assignment())
            _log.info("egress_fetch_resumed", in_flight=in_flight, limit=self._flow.limit)
        if self._paused_retry or self._retry_pauses_applied:
            self._apply_retry_pauses(consumer)
        data = await consumer.getmany(timeout_ms=timeout_ms, max_records=decision.room)
        return data

    def _pace_retries(self) -> None:
        """Pause a client's retry partitions at its share of the in-flight window (its records
        read back wait there while it is held), resume them at half of it."""
        paused = self._paused_retry
        for client, count in self._retry_in_flight.items():
            if client in paused:
                if count <= self._share[client] // 2:
                    paused.discard(client)
            elif count >= self._share[client]:
                paused.add(client)

    def _apply_retry_pauses(self, consumer: AIOKafkaConsumer) -> None:
        pause = []
        resume = []
        stopped = consumer.paused()
        for tp in consumer.assignment():
            client = self._retry_clients.get(tp.topic)
            if client is None:
                continue
            if client in self._paused_retry:
                if tp not in stopped:
                    pause.append(tp)
            elif tp in stopped:
                resume.append(tp)
        if pause:
            consumer.pause(*pause)
        if resume:
            consumer.resume(*resume)
        self._retry_pauses_applied = bool(self._paused_retry)

    def _ingest(
        self, record: Any, today: Any, now: float, consumed: dict[tuple[str, str], int]
    ) -> None:
        """One record: track it, then parse, route and batch it, or refuse it. Never raises.
        Counts it in ``consumed`` by (client, interface) when it is batched."""
        topic, partition, offset = record.topic, record.partition, record.offset
        generation = self._tracker.track((topic, partition), offset)
        verdict = self._poison.verdict((topic, partition), offset)
        ref = new_record_ref(
            (
                topic,
                partition,
                offset,
                record.key,
                record.value,
                generation,
                record.timestamp,
                record.headers,
            )
        )
        status = self._status_kind.get(topic, False)
        retry_client = self._retry_clients.get(topic)
        held_since = None
        if retry_client is not None:  # read back from a retry topic: kind of its first topic
            source, held_since = read_retry_headers(record.headers)
            status = self._status_kind.get(source, False) if source is not None else False
        try:
            parsed = parse_record(ref, status=status)
            if isinstance(parsed, OutboundMessage):
                outcome = self._router.prepare(parsed, today)
            else:
                outcome = self._router.reject(parsed)
        except Exception as exc:  # a bug must not wedge the partition on one record
            _log.exception("egress_ingest_failed", topic=topic, partition=partition, offset=offset)
            reason = f"internal error while preparing: {exc!r}"
            outcome = Rejected(Refusal(ref, reason, reason_class=DeadLetterReason.INTERNAL), None)
        if verdict is POISON and not isinstance(outcome, Rejected):
            outcome = poisoned(outcome, self._poison.reason((topic, partition), offset))
        if isinstance(outcome, Rejected):
            self._refuse(outcome)
            return
        outcome.message.release_payload()
        if verdict is SUSPECT:  # in a failed batch before: sent in a batch of its own
            self._flush_open_batches()
        if self._tracing:
            traceparent = tracing.traceparent_of(record.headers)
            if traceparent is not None:
                self._traceparents[(topic, partition, offset)] = traceparent
        if self._parking and record.headers and outcome.route.client_name in self._parking:
            released = unparked_id(record.headers)  # re-driven by `dlq release`
            if released is not None:
                self._unparked[(topic, partition, offset)] = released
        if retry_client is None:
            labels = (outcome.route.client_name, outcome.message.interface_id)
            consumed[labels] = consumed.get(labels, 0) + 1
        else:  # counted as consumed when it was first read
            self._retry_in_flight[retry_client] = self._retry_in_flight.get(retry_client, 0) + 1
            if held_since is not None:
                self._held_since[(topic, partition, offset)] = held_since
        for batch in self._batcher.add(outcome, now):
            self._dispatch(batch)
        if verdict is SUSPECT:
            self._flush_open_batches()

    def _flush_open_batches(self) -> None:
        for batch in self._batcher.flush():
            self._dispatch(batch)

    def _export_lag(self) -> None:
        """Lag of each assigned partition (a revoked one's series is removed on revoke)."""
        consumer = self._consumer
        assert consumer is not None
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            position = self._fetched.get((tp.topic, tp.partition))
            if high is not None and position is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    max(high - position, 0)
                )

    def _export_shares(self) -> None:
        """Each client's records in flight, by where they were read."""
        for client in self._share:
            for source, counts in (
                ("outbound", self._fresh_in_flight),
                ("retry", self._retry_in_flight),
            ):
                metrics.CLIENT_MESSAGES_IN_FLIGHT.labels(client, source).set(counts.get(client, 0))

    # ------------------------------------------------------------------------- dispatch

    def _congested(self) -> bool:
        """Requests are scarce: one waits for a signing thread, a request slot or a pooled
        connection (then open batches keep filling, up to ``egress.max_linger_ms``)."""
        dip = self._dip
        return dip.signing_queued > 0 or self._slots.contended or dip.waiting_for_connection() > 0

    def _dispatch(self, batch: Batch) -> None:
        """Send a closed batch now, or park it until the batches holding its keys are final."""
        if self._gate.is_ready(batch.batch_id):
            self._spawn(self._run_batch(batch))
        else:
            self._waiting[batch.batch_id] = batch

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, batch: Batch) -> None:
        first = batch.items[0].route
        client = first.client.name
        # Each task runs in its own copy of the context: these fields mark every event of
        # this batch (retries, splits, signing errors) and nothing else.
        structlog.contextvars.bind_contextvars(
            batch=batch.batch_id,
            client=first.client.name,
            dip_id=batch.sender_dip_id,
            interface=batch.interface_id,
        )
        attributes = (
            {
                "dcpgw.client": first.client.name,
                "dcpgw.dip_id": batch.sender_dip_id,
                "dcpgw.interface": batch.interface_id,
                "messaging.batch.message_count": len(batch.items),
            }
            if self._tracing
            else None
        )
        diverting = False
        try:
            with tracing.span("egress.batch", links=self._links(batch), attributes=attributes):
                if self._tracing:
                    loop = asyncio.get_running_loop()
                    started = tracing.wall_ns_of(batch.created, loop.time())
                    tracing.past_span("egress.consume", started, time.time_ns())
                parked: list[tuple[Prepared, Park]] = []  # each with the park holding it
                if client in self._parking and self._parked.any_for(client):
                    parked, batch = self._split_parked(batch, client)
                sent = await self._send(batch, client) if batch.items else Sent([], [])
                parks = self._parks(sent.deliveries, client) if client in self._parking else []
                if sent.held:
                    diverting = True
                    self._diversions.writing(client)
                await self._dip.settled()  # the ledger's records first: it must not lag commits
                with tracing.span("egress.outcome_write"):  # results carry this span's context
                    records = outcome_records(sent.deliveries, tracing.record_headers())
                    if sent.held:
                        records += self._diverted(client, sent.held)
                    if parked:
                        records += self._parked_records(client, parked)
                    if parks:
                        records += [r for _, _, r in parks]
                    await self._write(records)
            for key, park, _ in parks:  # on Kafka: park before the gate lets the next one go
                self._park(client, key, park)
            if self._unparked:  # final (sent, parked or diverted): their passes are spent
                for prepared in [*(p for p, _ in parked), *batch.items]:
                    ref = prepared.message.ref
                    self._unparked.pop((ref.topic, ref.partition, ref.offset), None)
            self._count(sent.deliveries)
            finish = self._tracker.finish
            for prepared, _ in parked:
                ref = prepared.message.ref
                finish((ref.topic, ref.partition), ref.offset, ref.generation)
            for delivery in sent.deliveries:
                ref = delivery.prepared.message.ref
                finish((ref.topic, ref.partition), ref.offset, ref.generation)
            for held in sent.held:
                for prepared in held.items:
                    ref = prepared.message.ref
                    finish((ref.topic, ref.partition), ref.offset, ref.generation)
            done = len(batch.items) + len(parked)  # the batch as it was dispatched
            if batch.retried:  # counted under its retry topic's client (see _ingest)
                head = batch.items[0] if batch.items else parked[0][0]
                topic = head.message.ref.topic
                owner = self._retry_clients.get(topic, client)
                self._retry_in_flight[owner] = max(self._retry_in_flight.get(owner, 0) - done, 0)
                self._pace_retries()
            else:
                self._fresh_in_flight[client] = max(self._fresh_in_flight.get(client, 0) - done, 0)
            self._finished()
        except asyncio.CancelledError:  # abandoned: nothing waiting starts (see _release)
            self._release(batch)
            raise
        except Exception as exc:
            # Only a bug gets here. The records stay unfinished (re-read after the restart) and
            # the batch keeps its keys, so no later message with one of them overtakes them;
            # egress stops with the error, and the gateway exits to be restarted.
            _log.exception("egress_batch_failed", batch=batch.batch_id)
            refs = [prepared.message.ref for prepared in batch.items]
            self._poison.failed((((r.topic, r.partition), r.offset) for r in refs), repr(exc))
            self._fail(
                f"internal error in batch {batch.batch_id} ({len(batch.items)} messages, "
                f"{batch.sender_dip_id} {batch.interface_id}): {exc!r}; its records were not "
                "committed and are sent again after the restart",
                exc,
            )
        else:
            self._release(batch)
        finally:
            if diverting:
                self._diversions.written(client)

    async def _send(self, batch: Batch, client: str) -> Sent:
        """Send the batch, or divert it at once while its client diverts (fresh records only:
        records read back from a retry topic are sent, waiting out their client's hold)."""
        if not batch.retried:
            if not self._may_divert:
                return await self._sender.deliver(batch)
            if not self._backlog_known.is_set():
                await self._backlog_known.wait()
            if client in self._diversions or self._crowding(client):
                return Sent([], [batch])
            return await self._sender.deliver(batch, divertable=True)
        held_since = self._held_since
        since = [
            held_since.pop((ref.topic, ref.partition, ref.offset), None)
            for ref in (p.message.ref for p in batch.items)
        ]
        known = [s for s in since if s is not None]
        if known:
            batch.held_since = min(known)
        return await self._sender.deliver(batch)

    def _crowding(self, client: str) -> bool:
        """The in-flight window is full and ``client`` holds more than its share of it: it
        diverts from now on, so its backlog cannot stop the others' records from being
        fetched (a client the DIP answers slowly, or one with a deep backlog)."""
        # The configured share, not one among the clients seen in flight: the others' records
        # may be the ones the full window keeps from being fetched.
        if self._fresh_in_flight.get(client, 0) <= self._share[client]:
            return False  # (first: a dict lookup; the window's count sums every partition)
        if self._tracker.in_flight() < self._flow.low_water:
            return False
        why = "above its share of egress.max_in_flight_messages while the window is full"
        self._start_diverting(client, reason=why)
        return True

    def _start_diverting(self, client: str, **why: object) -> None:
        if self._diversions.start(client):
            metrics.DIVERTING.labels(client).set(1)
            _log.warning("egress_client_diverting", client=client, **why)

    def _diverted(self, client: str, batches: list[Batch]) -> list[OutRecord]:
        """The records of ``batches`` for the client's retry topic, in order."""
        topic = self._retry_topic[client]
        out = [
            retry_record(topic, prepared.message.ref, batch.held_since)
            for batch in batches
            for prepared in batch.items
        ]
        if self._unparked:  # a released record keeps its pass through the retry topic
            for i, ref in enumerate(p.message.ref for b in batches for p in b.items):
                released = self._unparked.get((ref.topic, ref.partition, ref.offset))
                if released is not None:
                    headers = [*(out[i].headers or ()), (UNPARKED_HEADER, released.encode())]
                    out[i] = out[i]._replace(headers=headers)
        metrics.DIVERTED.labels(client).inc(len(out))
        return out

    def _split_parked(self, batch: Batch, client: str) -> tuple[list[tuple[Prepared, Park]], Batch]:
        """The batch's records whose key is parked, each with its park as read now (a release
        may drop it while the rest is sent), and the batch of the others (order kept)."""
        parked_keys = self._parked.entries(client)
        for prepared in batch.items:  # almost always none: one membership test per record
            if prepared.message.ref.key in parked_keys:
                break
        else:
            return [], batch
        unparked = self._unparked
        parked: list[tuple[Prepared, Park]] = []
        rest: list[Prepared] = []
        for prepared in batch.items:
            ref = prepared.message.ref
            park = self._parked.get(client, ref.key)
            released = unparked.get((ref.topic, ref.partition, ref.offset)) if unparked else None
            if park is not None and holds(park, ref, released):
                parked.append((prepared, park))
            else:
                rest.append(prepared)
        if not parked:
            return [], batch
        return parked, batch.with_items(rest)

    def _parked_records(self, client: str, parked: list[tuple[Prepared, Park]]) -> list[OutRecord]:
        """The records for the client's parked topic, in order, each under the park that held
        it back. A park released while the rest of the batch was sent (``dlq release``) still
        holds its records: the release re-drives what was parked under it a few seconds later,
        so one parked after that is logged for a second release."""
        topic = self._parking[client]
        out = []
        for prepared, park in parked:
            ref = prepared.message.ref
            out.append(parked_record(topic, ref, park))
            current = self._parked.get(client, ref.key)
            if current is None or current.park_id != park.park_id:
                _log.warning(
                    "egress_parked_under_released_park",
                    client=client,
                    park=park.park_id,
                    topic=ref.topic,
                    partition=ref.partition,
                    offset=ref.offset,
                    hint="run `dlq release` for the key again to re-drive it",
                )
            self._held_since.pop((ref.topic, ref.partition, ref.offset), None)
        metrics.PARKED.labels(client).inc(len(out))
        return out

    def _parks(
        self, deliveries: list[Delivery], client: str
    ) -> list[tuple[bytes, Park, OutRecord]]:
        """A park per key of the client's dead-lettered deliveries, with its state record."""
        topic = self._config.kafka.parked_keys_topic
        out: list[tuple[bytes, Park, OutRecord]] = []
        rejected = [d for d in deliveries if not d.result.accepted]
        if not rejected or topic is None:
            return out
        seen: set[bytes] = set()
        for delivery in rejected:
            result = delivery.result
            key = delivery.prepared.message.ref.key
            if key is None or key in seen:
                continue
            seen.add(key)
            cls = (result.reason_class or DeadLetterReason.DIP_REJECTION).value
            dead = delivery.prepared.route.client.topics.dead_letter
            park = new_park(delivery.prepared.message.ref, cls, dead)
            out.append((key, park, state_record(topic, client, key, park)))
        return out

    def _park_refused(
        self, client: str, ref: RecordRef, reason_class: DeadLetterReason, dead_letter_topic: str
    ) -> list[OutRecord]:
        """Park the key of a refused record at once, not on the write's acknowledgement: a
        refused record holds no key in the gate, so the next record with its key may be batched
        right away. A key parked already keeps its park (and head). The state record to write
        with the dead letter, if any."""
        state_topic = self._config.kafka.parked_keys_topic
        if ref.key is None or state_topic is None or self._parked.get(client, ref.key):
            return []
        park = new_park(ref, reason_class.value, dead_letter_topic)
        self._park(client, ref.key, park)
        return [state_record(state_topic, client, ref.key, park)]

    def _park(self, client: str, key: bytes, park: Park) -> None:
        if self._parked.park(client, key, park):
            self._parked_changed(client)
            _log.warning(
                "egress_key_parked",
                client=client,
                reason_class=park.reason_class,
                head=f"{park.source_topic}[{park.source_partition}]@{park.source_offset}",
            )

    def _parked_changed(self, client: str) -> None:
        metrics.PARKED_KEYS.labels(client).set(self._parked.count(client))

    def _hold_changed(self, client: str, hold: Hold | None) -> None:
        """A client was held (its records divert from now on) or released."""
        metrics.client_hold(client, hold)
        if hold is not None:
            self._start_diverting(client, hold=hold.kind.value, reason=hold.reason)

    async def _on_assigned(self) -> None:
        """Before taking records of new partitions: a client with a retry backlog (records
        another replica, or this one before a restart, diverted) diverts until it is drained."""
        consumer = self._consumer
        if consumer is None:
            return
        self._backlog_known.clear()  # (already, after a revocation; not at start-up)
        self._diversions.invalidate()
        topics = list(self._retry_clients)
        try:
            try:
                backlog = await retry_backlog(consumer, topics)
            except KafkaError as exc:  # unknown: divert everyone until it can be read
                _log.warning("egress_retry_backlog_unknown", error=str(exc))
                backlog = dict.fromkeys(topics, 1)
            for topic, count in backlog.items():
                if count:
                    self._start_diverting(self._retry_clients[topic], retry_backlog=count)
        finally:
            self._backlog_known.set()

    async def _end_diversions(self) -> None:
        """Every second: stop diverting a client once it is not held and its retry backlog is
        empty; let lapse a hold that no batch of this replica will ever probe."""
        while True:
            await asyncio.sleep(_DIVERSION_CHECK_SECONDS)
            try:
                self._lapse_holds()
                await self._end_drained_diversions()
            except KafkaError as exc:
                _log.warning("egress_retry_backlog_unknown", error=str(exc))
            except Exception:  # a bug here must not leave every client diverting silently
                _log.exception("egress_diversion_check_failed")

    def _lapse_holds(self) -> None:
        if not self._may_divert:  # the held batches wait here and probe themselves
            return
        for client in list(self._holds.held()):
            if self._retry_in_flight.get(client, 0):
                continue  # its own read-back batches will probe
            if self._holds.lapse(client, after=_HOLD_LAPSE_SECONDS):
                _log.info("egress_client_hold_lapsed", client=client)

    async def _end_drained_diversions(self) -> None:
        consumer = self._consumer
        candidates = [c for c in self._diversions.clients() if self._holds.get(c) is None]
        if consumer is None or not candidates:
            return
        epochs = {c: self._diversions.epoch(c) for c in candidates}
        backlog = await retry_backlog(consumer, [self._retry_topic[c] for c in candidates])
        for client in candidates:
            if self._holds.get(client) is not None:
                continue  # held again while we looked
            topic = self._retry_topic[client]
            if not backlog[topic] and self._diversions.stop(client, epochs[client]):
                metrics.DIVERTING.labels(client).set(0)
                _log.info("egress_client_diversion_ended", client=client)

    def _links(self, batch: Batch) -> list[Any]:
        """Links to the traces of the batch's records that carried a ``traceparent``."""
        if not self._traceparents:
            return []
        found = []
        for prepared in batch.items:
            ref = prepared.message.ref
            traceparent = self._traceparents.pop((ref.topic, ref.partition, ref.offset), None)
            if traceparent is not None:
                found.append(traceparent)
        return tracing.links_to(found) if found else []

    def _release(self, batch: Batch) -> None:
        """The batch is final: start the batches that waited for its keys."""
        ready = self._gate.release(batch.batch_id)
        if not self._abandoning:  # abandoned work must not start the batches behind it
            for batch_id in ready:
                waiting = self._waiting.pop(batch_id, None)
                if waiting is not None:
                    self._spawn(self._run_batch(waiting))

    @staticmethod
    def _count(deliveries: list[Delivery]) -> None:
        """Accepted / rejected counters. The deliveries are one batch's: one sender DIP ID (so
        one client) and one interface, so one labelled child per outcome."""
        if not deliveries:
            return
        first = deliveries[0].prepared
        children = metrics.counters(first.route.client.name, first.message.interface_id)
        accepted = sum(1 for delivery in deliveries if delivery.result.accepted)
        rejected = len(deliveries) - accepted
        if accepted:
            children.accepted.inc(accepted)
        if not rejected:
            return
        children.rejected.inc(rejected)
        by_class: dict[DeadLetterReason, list[Delivery]] = {}
        for delivery in deliveries:
            if not delivery.result.accepted:
                cls = delivery.result.reason_class or DeadLetterReason.DIP_REJECTION
                by_class.setdefault(cls, []).append(delivery)
        for cls, dead in by_class.items():
            children.dead_lettered(cls).inc(len(dead))
            one = dead[0]
            message = one.prepared.message
            _log_dead_letter(
                client=children.client,
                dip_id=message.sender_dip_id,
                interface=message.interface_id,
                status=one.status,
                count=len(dead),
                first_sender_unique_reference=message.sender_unique_reference,
                first_transaction_id=one.result.transaction_id,
                reason_class=cls.value,
                reason=one.result.reason,
                topic=one.prepared.route.client.topics.dead_letter,
            )

    def _refuse(self, rejected: Rejected) -> None:
        refusal = rejected.refusal
        client = rejected.client
        topic = client.topics.dead_letter if client else self._config.kafka.dead_letter_topic
        counters = metrics.counters(
            client.name if client else _UNROUTED, refusal.interface_id or _UNROUTED
        )
        counters.consumed.inc()
        counters.dead_lettered(refusal.reason_class).inc()
        _log_dead_letter(
            client=counters.client,
            dip_id=refusal.sender_dip_id,
            interface=refusal.interface_id,
            status=None,
            count=1,
            first_sender_unique_reference=None,
            first_transaction_id=None,
            reason_class=refusal.reason_class.value,
            reason=refusal.reason,
            topic=topic,
            source=f"{refusal.ref.topic}[{refusal.ref.partition}]@{refusal.ref.offset}",
        )
        record = dead_letter(
            topic,
            refusal.ref,
            refusal.reason,
            0,
            None,
            refusal.sender_dip_id,
            refusal.interface_id,
            refusal.reason_class,
        )
        records = [record]
        if client is not None and client.name in self._parking:
            records += self._park_refused(client.name, refusal.ref, refusal.reason_class, topic)
        self._spawn(self._write_refusal(records, refusal.ref))

    async def _write_refusal(self, records: list[OutRecord], ref: RecordRef) -> None:
        try:
            await self._write(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: stop as a failed batch does (the record stays unfinished)
            _log.exception("egress_refusal_write_failed", topic=ref.topic, offset=ref.offset)
            self._fail(
                f"internal error writing the dead letter of {ref.topic}[{ref.partition}] offset "
                f"{ref.offset}: {exc!r}; the record was not committed and is read again after "
                "the restart",
                exc,
            )
            return
        self._tracker.finish((ref.topic, ref.partition), ref.offset, ref.generation)
        self._finished()

    def _fail(self, message: str, cause: BaseException) -> None:
        """Record the first internal error: the consume loop ends, and run() raises it."""
        if self._failure is None:
            self._failure = EgressFailed(message)
            self._failure.__cause__ = cause

    def _finished(self) -> None:
        """Records became final: commit soon, and wake a held consumer once the refill is free
        (low water)."""
        self._final.set()
        if self._flow.stopped and self._tracker.in_flight() <= self._flow.low_water:
            self._room.set()

    async def _write(self, records: list[OutRecord]) -> None:
        """Produce every record and wait for all acknowledgements; retry until it works (a
        record is final only once Kafka has it). Shutdown/revoke may abandon this wait."""
        writer = self._writer
        assert writer is not None
        failing = False
        try:
            while True:
                try:
                    await writer.write(records)
                    return
                except KafkaError as exc:
                    if refused_for_size(exc):  # a dead letter too large: written without value
                        records = await write_shedding_values(writer, records)
                        if not records:
                            return
                    metrics.OUTCOME_WRITE_FAILURES.inc()
                    _log.error("egress_outcome_write_failed", error=str(exc), records=len(records))
                    if not failing:
                        failing = True
                        self._failing_writes += 1
                    self._set_health(False, f"outcome writes failing: {exc}")
                    await asyncio.sleep(_PRODUCE_RETRY_SECONDS)
        finally:
            if failing:
                self._failing_writes -= 1
                if not self._failing_writes and self._consuming:
                    self._set_health(True, "consuming")

    # ------------------------------------------------------------------ commit, drain, revoke

    async def _commit_when_final(self) -> None:
        """Commit as soon as records become final, one commit at a time.

        What a crash sends again is every record the DIP has answered whose offset is not
        committed yet; committing on the consume loop's timer (every 0.2 s, after a poll of
        up to 0.1 s) left each answered record uncommitted for ~0.2 s on average."""
        while True:
            await self._final.wait()
            self._final.clear()
            await self._commit(force=True)
            await asyncio.sleep(_COMMIT_GAP)

    async def _commit(self, *, force: bool = False) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        now = time.monotonic()
        if not force and now - self._last_commit < _COMMIT_INTERVAL:
            return
        async with self._commit_lock:  # the committer, a drain and a revocation may overlap
            self._last_commit = now
            positions = self._tracker.committable()
            dirty = self._poison.take_dirty()
            for tp in dirty:  # new failure counts are committed even if no offset moved
                resume = self._tracker.resume_position(tp)
                if resume is not None:
                    positions.setdefault(tp, resume)
            self._poison.not_committed(dirty - positions.keys())
            if not positions:
                return
            meta = self._poison.metadata
            try:
                await consumer.commit(
                    {
                        TopicPartition(t, p): OffsetAndMetadata(o, meta((t, p), o))
                        for (t, p), o in positions.items()
                    }
                )
            except KafkaError as exc:
                self._poison.not_committed(dirty)
                metrics.COMMIT_FAILURES.inc()
                _log.warning("egress_commit_failed", error=str(exc))
                return
            except asyncio.CancelledError:  # the next commit (a drain's, a revoke's) carries them
                self._poison.not_committed(dirty)
                raise
            self._tracker.mark_committed(positions)

    async def _drain(self, grace: float) -> None:
        """Send what is batched, give in-flight work ``grace`` seconds, commit what is final."""
        for batch in self._batcher.flush():
            self._dispatch(batch)
        deadline = time.monotonic() + grace
        # Batches waiting out a client hold would wait the whole grace: not for them.
        while len(self._tasks) > self._holds.waiting and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=min(0.05, deadline - time.monotonic()))
            await self._commit()
        await self._commit(force=True)

    async def _abandon(self) -> None:
        """Cancel unfinished work; its records are not committed and will be read again."""
        self._abandoning = True
        try:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._abandoning = False
        self._waiting.clear()
        self._traceparents.clear()
        self._held_since.clear()
        self._retry_in_flight.clear()
        self._fresh_in_flight.clear()
        self._unparked.clear()
        self._paused_retry.clear()
        self._gate, self._batcher = self._fresh_batching()  # open batches are dropped
        abandoned = self._tracker.in_flight()
        if abandoned:
            _log.warning("egress_abandoned_in_flight", records=abandoned)

    async def _load_poison_counts(self, assigned: set[TopicPartition]) -> None:
        """Failure counts of suspect records, from the committed offsets' metadata
        (:mod:`gateway.egress.poison`). Without them (an error), records are sent as usual."""
        consumer = self._consumer
        if consumer is None or not assigned:
            return
        try:  # what consumer.committed() calls, which keeps only the offset
            async with asyncio.timeout(READ_SECONDS):
                found = await consumer._coordinator.fetch_committed_offsets(list(assigned))
        except (KafkaError, TimeoutError) as exc:  # best effort: never holds the assignment up
            _log.warning("egress_poison_counts_unread", error=repr(exc))
            return
        for tp, committed in found.items():
            self._poison.load((tp.topic, tp.partition), committed.metadata)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        _log.info("egress_partitions_revoked", partitions=len(revoked))
        await self._drain(self._config.egress.shutdown_grace_seconds)
        await self._abandon()
        self._backlog_known.clear()  # until the next assignment's backlogs are read
        await self._commit(force=True)
        self._poison.forget(self._tracker.partitions())
        self._tracker.forget(set(self._tracker.partitions()))
        self._fetched.clear()
        for tp in revoked:  # lag follows the assignment: another member reports these now
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        self._flow.reset()
        metrics.PAUSED.set(0)


_slot_gauges: dict[str, Any] = {}


def _slots_changed(client: str, in_use: int) -> None:
    """Twice per request: the labelled child is looked up once per client."""
    gauge = _slot_gauges.get(client)
    if gauge is None:
        gauge = _slot_gauges[client] = metrics.CLIENT_REQUESTS_IN_FLIGHT.labels(client)
    gauge.set(in_use)


def _log_dead_letter(**fields: object) -> None:
    """One event per dead-lettered batch part or refused record (rate-limited per process)."""
    log_limited(_log, _dead_letter_log, "warning", "egress_dead_lettered", **fields)


__all__ = ["HEALTH_NAME", "EgressService"]

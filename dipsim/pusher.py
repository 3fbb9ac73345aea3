"""Publication pushes: signed POSTs to registered webhooks, off the request path.

Each target (interface or status kind, recipient DIP ID) has its own FIFO lane; a lane task
drains it in batches of at most ``maxMessageCount`` messages (and ``maxPayloadSize`` KB),
signs each batch with the DIP's signing credential over the callback URL, verifies the
webhook's TLS certificate against the configured CA, and retries a failed batch (non-2xx or
connection error) with exponential backoff. Every attempt is recorded per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from dipsim.config import SimulatorConfig
from dipsim.state import STATUS_KIND, Attempt, Publication, SimState
from gateway.signing.credentials import SigningCredential

log = logging.getLogger("dipsim.pusher")


@dataclass(slots=True)
class _Job:
    pub: Publication
    replay: bool
    requeue_id: str | None


def _body_for(pub: Publication, replay: bool) -> dict[str, Any]:
    if not replay or pub.kind == STATUS_KIND or pub.d0 is None:
        return pub.body
    common = pub.source.get("CommonBlock") or {}
    d0 = {**pub.d0, "replayIndicator": True}
    return {"payload": {**pub.source, "CommonBlock": {**common, "D0": d0}}}


class Pusher:
    def __init__(
        self,
        state: SimState,
        config: SimulatorConfig,
        credential: SigningCredential,
        ssl_context: ssl.SSLContext,
    ) -> None:
        self._state = state
        self._config = config
        self._credential = credential
        self._ssl = ssl_context
        self._lanes: dict[tuple[str, str], deque[_Job]] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=100)
        timeout = aiohttp.ClientTimeout(total=self._config.push_timeout_seconds)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def wait_idle(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until every queued publication has been delivered or given up on."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def enqueue(
        self, pubs: list[Publication], *, replay: bool = False, requeue_id: str | None = None
    ) -> None:
        for pub in pubs:
            key = (pub.kind, pub.recipient)
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = deque()
            lane.append(_Job(pub, replay, requeue_id))
            delivery = self._state.delivery(pub)
            if delivery.status != "Delivered" or replay:
                delivery.status = "Pending"
            if key not in self._tasks:
                self._idle.clear()
                self._tasks[key] = asyncio.create_task(self._run_lane(key))

    async def _run_lane(self, key: tuple[str, str]) -> None:
        try:
            lane = self._lanes[key]
            while lane:
                webhook = self._state.webhooks.get(key)
                if webhook is None:
                    while lane:
                        job = lane.popleft()
                        d = self._state.delivery(job.pub)
                        d.status = "NoWebhook"
                        self._count_requeue(job, ok=False)
                    break
                batch = self._take(lane, webhook.max_message_count, webhook.max_payload_kb)
                await self._deliver(batch, webhook.callback_url)
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - a bug; keep the simulator alive
            log.exception("push lane %s crashed", key)
        finally:
            self._tasks.pop(key, None)
            if not self._tasks:
                self._idle.set()

    @staticmethod
    def _take(lane: deque[_Job], max_count: int, max_kb: float | None) -> list[_Job]:
        batch: list[_Job] = []
        size = 2
        limit = max_kb * 1024 if max_kb else None
        while lane and len(batch) < max(1, max_count):
            job = lane[0]
            item_size = len(orjson.dumps(_body_for(job.pub, job.replay))) + 1
            if batch and limit is not None and size + item_size > limit:
                break
            batch.append(lane.popleft())
            size += item_size
        return batch

    async def _deliver(self, batch: list[_Job], url: str) -> None:
        cfg = self._config
        body = orjson.dumps([_body_for(j.pub, j.replay) for j in batch])
        deliveries = [self._state.delivery(j.pub) for j in batch]
        replay = any(j.replay for j in batch)
        delay = cfg.push_backoff_initial_seconds
        for attempt in range(1, max(1, cfg.push_max_attempts) + 1):
            status, error = await self._post(url, body)
            now = datetime.now(UTC)
            ok = status is not None and 200 <= status < 300
            for d in deliveries:
                d.attempts += 1
                d.last_status = status
                d.last_error = error
                d.callback_url = url
                d.history.append(Attempt(now, status, error, replay))
                if ok:
                    d.status = "Delivered"
                    d.delivered_at = now
                else:
                    d.failed_attempts += 1
                    d.status = "Retrying"
            if ok:
                self._state.pushes["ok"] += 1
                self._state.pushes["messages"] += len(batch)
                for j in batch:
                    self._count_requeue(j, ok=True)
                return
            self._state.pushes["failed"] += 1
            if attempt < cfg.push_max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, cfg.push_backoff_max_seconds)
        self._state.pushes["exhausted"] += 1
        for d in deliveries:
            d.status = "RetriesExhausted"
        for j in batch:
            self._count_requeue(j, ok=False)

    async def _post(self, url: str, body: bytes) -> tuple[int | None, str | None]:
        assert self._session is not None, "Pusher.start() not called"
        loop = asyncio.get_running_loop()
        headers = await loop.run_in_executor(
            None, self._credential.sign, "POST", url, body, datetime.now(UTC)
        )
        headers["Content-Type"] = "application/json"
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return response.status, None
                return response.status, f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]

    def _count_requeue(self, job: _Job, *, ok: bool) -> None:
        if job.requeue_id is None:
            return
        requeue = self._state.requeues.get(job.requeue_id)
        if requeue is None:
            return
        if ok:
            requeue.processed += 1
        else:
            requeue.failed += 1

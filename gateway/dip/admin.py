"""DIP admin calls: webhook registration, replay, requeue, requeue status, delivery status.

Request building is pure (paths, bodies, the sync plan); the calls are thin ``async`` functions
over the shared :class:`~gateway.dip.client.DipClient`, signed for the DIP ID concerned (the
recipient whose webhook or publications they are), exactly as egress signs submissions.

Webhook sync: the DIP offers no GET for ``pubconfig``, and registration is an upsert (a POST
replaces the callback for that interface and DIP ID). So ``sync`` re-POSTs every registration
the config implies on each run (idempotent, and it repairs anything changed in the portal), and
it removes (DELETE) only what an optional state file says it registered before and the config
no longer implies. Without a state file nothing is ever removed, because the gateway cannot
know what someone else registered.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gateway.dip.client import DipClient, DipResponse, dip_path
from gateway.dip.webhook_urls import publication_callback_url, status_callback_url

if TYPE_CHECKING:  # annotations only: the configuration imports gateway.dip's vocabulary
    from gateway.config import GatewayConfig

STATUS_CHANNEL = "status"
CONTINUATION_HEADER = "X-Continuation-Token"


class AdminError(Exception):
    """A DIP admin call failed; the message says which call and what the DIP answered."""


# -- webhooks -------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class WebhookTarget:
    """One registration: ``channel`` is an interface ID (publications) or ``status``."""

    channel: str
    dip_id: str
    callback_url: str

    @property
    def path(self) -> str:
        if self.channel == STATUS_CHANNEL:
            return dip_path("statusmessage", "config", self.dip_id)
        return dip_path("dip-channel", self.channel, "pubconfig", self.dip_id)

    @property
    def slot(self) -> tuple[str, str]:
        """What the DIP keys a registration by: one callback per (channel, DIP ID)."""
        return self.channel, self.dip_id

    def describe(self) -> str:
        return f"{self.channel:<8} {self.dip_id} -> {self.callback_url}"


@dataclass(frozen=True)
class SyncPlan:
    register: tuple[WebhookTarget, ...]
    remove: tuple[WebhookTarget, ...]
    unremovable: tuple[WebhookTarget, ...] = ()

    def lines(self) -> list[str]:
        out = [f"register {t.describe()}" for t in self.register]
        out += [f"remove   {t.describe()}" for t in self.remove]
        out += [
            f"skip     {t.describe()} (DIP ID no longer configured: cannot sign its removal)"
            for t in self.unremovable
        ]
        return out


def desired_webhooks(config: GatewayConfig) -> list[WebhookTarget]:
    """Every registration the config implies: each DIP ID's publication interfaces, plus one
    status-message webhook per DIP ID."""
    out: set[WebhookTarget] = set()
    for client in config.clients:
        for dip in client.dip_ids:
            for interface in dip.publications:
                url = publication_callback_url(config.ingress, interface, dip.dip_id)
                out.add(WebhookTarget(interface, dip.dip_id, url))
            out.add(
                WebhookTarget(
                    STATUS_CHANNEL, dip.dip_id, status_callback_url(config.ingress, dip.dip_id)
                )
            )
    return sorted(out)


def webhook_body(config: GatewayConfig, target: WebhookTarget) -> bytes:
    """``WebhookConfig``: the callback, and the largest push the webhook accepts (in KB)."""
    body: dict[str, Any] = {
        "callbackURL": target.callback_url,
        "maxPayloadSize": config.ingress.max_body_bytes // 1024,
    }
    if config.ingress.max_message_count is not None:
        body["maxMessageCount"] = config.ingress.max_message_count
    return orjson.dumps(body)


def plan_sync(
    desired: Sequence[WebhookTarget],
    recorded: Iterable[WebhookTarget],
    configured_dip_ids: Iterable[str],
) -> SyncPlan:
    """Register everything desired (upsert); remove recorded slots no longer desired."""
    wanted = {t.slot for t in desired}
    owned = set(configured_dip_ids)
    stale = sorted({t for t in recorded if t.slot not in wanted})
    return SyncPlan(
        register=tuple(desired),
        remove=tuple(t for t in stale if t.dip_id in owned),
        unremovable=tuple(t for t in stale if t.dip_id not in owned),
    )


def read_state(path: Path | None) -> list[WebhookTarget]:
    """Registrations recorded by the previous sync (empty when there is no file)."""
    if path is None or not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [WebhookTarget(d["channel"], d["dip_id"], d["callback_url"]) for d in data]


def write_state(path: Path, targets: Iterable[WebhookTarget]) -> None:
    items = [
        {"channel": t.channel, "dip_id": t.dip_id, "callback_url": t.callback_url}
        for t in sorted(targets)
    ]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(items, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


@dataclass(frozen=True)
class SyncResult:
    action: str  # "register" / "remove"
    target: WebhookTarget
    status: int

    @property
    def ok(self) -> bool:
        # A DELETE of something already gone is the outcome we wanted.
        return 200 <= self.status < 300 or (self.action == "remove" and self.status == 404)


async def apply_sync(dip: DipClient, config: GatewayConfig, plan: SyncPlan) -> list[SyncResult]:
    """POST every registration, DELETE every removal, each signed for its DIP ID."""
    results = []
    for target in plan.register:
        response = await dip.request(
            "POST", target.path, target.dip_id, webhook_body(config, target)
        )
        results.append(SyncResult("register", target, response.status))
    for target in plan.remove:
        response = await dip.request("DELETE", target.path, target.dip_id)
        results.append(SyncResult("remove", target, response.status))
    return results


# -- replay / requeue / status ------------------------------------------------------------------


def _dip_datetime(value: datetime) -> str:
    """DT-003: 25 characters, ``2026-03-01T09:30:00+00:00``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def message_request(
    date_from: datetime,
    date_to: datetime,
    *,
    event_code: str | None = None,
    mpan: str | None = None,
    version: str | None = None,
    transaction_ids: Sequence[str] = (),
) -> bytes:
    """``MessageRequest`` (publications): the nullable selectors are sent as null."""
    body: dict[str, Any] = {
        "datetimeFrom": _dip_datetime(date_from),
        "datetimeTo": _dip_datetime(date_to),
        "eventCode": event_code,
        "MPAN": mpan,
        "version": version,
    }
    if transaction_ids:
        body["transactionIDs"] = list(transaction_ids)
    return orjson.dumps(body)


def status_message_request(
    date_from: datetime,
    date_to: datetime,
    *,
    transaction_id: str | None = None,
    sender_unique_reference: str | None = None,
) -> bytes:
    """``StatusMessageRequest``."""
    body: dict[str, Any] = {
        "datetimeFrom": _dip_datetime(date_from),
        "datetimeTo": _dip_datetime(date_to),
    }
    if transaction_id:
        body["transactionID"] = transaction_id
    if sender_unique_reference:
        body["senderUniqueReference"] = sender_unique_reference
    return orjson.dumps(body)


def channel_path(operation: str, dip_id: str, interface: str | None) -> str:
    """``/dip-channel/{id}/{operation}/{dip_id}``, or ``/statusmessage/...`` when
    ``interface`` is None (status messages)."""
    if interface is None:
        return dip_path("statusmessage", operation, dip_id)
    return dip_path("dip-channel", interface, operation, dip_id)


def _expect(response: DipResponse, ok: Iterable[int], what: str) -> None:
    if response.status not in set(ok):
        text = response.body[:300].decode("utf-8", "replace")
        raise AdminError(f"{what}: DIP answered {response.status}: {text}")


def _decode(response: DipResponse, what: str) -> Any:
    """The JSON body of a DIP answer; :class:`AdminError` (naming the call) when it is not."""
    try:
        return orjson.loads(response.body)
    except orjson.JSONDecodeError:
        text = response.body[:200].decode("utf-8", "replace")
        raise AdminError(
            f"{what}: DIP answered {response.status} with a body that is not JSON: {text!r}"
        ) from None


def _call(label: str, method: str, path: str) -> str:
    return f"{label} ({method} {path})"


async def replay_pages(
    dip: DipClient, dip_id: str, interface: str | None, request_body: bytes
) -> AsyncIterator[list[Any]]:
    """Each page of a replay, following ``X-Continuation-Token`` (206) to the last (200).

    A 206 without a token, or a token the DIP already gave, raises :class:`AdminError`: the
    first would silently cut the replay short, the second would loop for ever.
    """
    path = channel_path("replay", dip_id, interface)
    what = _call(f"replay {interface or 'status'} for {dip_id}", "POST", path)
    token: str | None = None
    seen: set[str] = set()
    pages = 0
    while True:
        headers = {CONTINUATION_HEADER: token} if token else None
        response = await dip.request("POST", path, dip_id, request_body, headers=headers)
        _expect(response, (200, 206), what)
        page = _decode(response, what) if response.body else []
        if not isinstance(page, list):
            raise AdminError(f"{what}: expected a JSON array, got {type(page).__name__}")
        pages += 1
        yield page
        if response.status != 206:
            return
        token = _header(response.headers, CONTINUATION_HEADER)
        if not token:
            raise AdminError(
                f"{what}: DIP answered 206 (more pages) to page {pages} without "
                f"{CONTINUATION_HEADER}: the replay is incomplete"
            )
        if token in seen:
            raise AdminError(
                f"{what}: DIP returned {CONTINUATION_HEADER} {token!r} again after page "
                f"{pages}: stopped rather than fetch the same pages for ever; replay a "
                "narrower time range"
            )
        seen.add(token)


async def requeue(dip: DipClient, dip_id: str, interface: str | None, request_body: bytes) -> str:
    """Ask the DIP to push past publications again; returns the requeue ID (202)."""
    path = channel_path("requeue", dip_id, interface)
    what = _call(f"requeue {interface or 'status'} for {dip_id}", "POST", path)
    response = await dip.request("POST", path, dip_id, request_body)
    _expect(response, (202,), what)
    value = _decode(response, what)
    if value is None or value == "" or isinstance(value, list | dict):
        raise AdminError(f"{what}: DIP answered 202 without a requeue ID: {value!r}")
    return value if isinstance(value, str) else str(value)


async def requeue_status(
    dip: DipClient, dip_id: str, interface: str | None, requeue_id: str | None
) -> list[Any]:
    """Progress of requeues (all of this DIP ID's on the channel when no ID is given)."""
    params = {"requeue-id": requeue_id} if requeue_id else None
    path = channel_path("requeueStatus", dip_id, interface)
    what = _call(f"requeueStatus {interface or 'status'} for {dip_id}", "GET", path)
    response = await dip.request("GET", path, dip_id, params=params)
    _expect(response, (200, 204), what)
    if response.status == 204 or not response.body:
        return []
    data = _decode(response, what)
    return data if isinstance(data, list) else [data]


async def delivery_status(
    dip: DipClient, dip_id: str, interface: str, message_id: str
) -> dict[str, Any] | None:
    """The DIP's journal of one message (by senderUniqueReference); None when it has none."""
    path = dip_path("dip-channel", interface, "deliveryStatus", dip_id, message_id)
    what = _call(f"deliveryStatus {message_id}", "GET", path)
    response = await dip.request("GET", path, dip_id)
    _expect(response, (200, 204), what)
    if response.status == 204 or not response.body:
        return None
    data = _decode(response, what)
    return data if isinstance(data, dict) else {"journal": data}


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name) or headers.get(name.lower())
    return str(value) if value else None

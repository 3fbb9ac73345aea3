"""Routing and pre-flight checks: which client sends a message, where, and whether it may go.

Pure decisions over the configuration, so every rule has a unit test:

* the sender DIP ID picks the client (its certificate and API key); an unknown sender is
  refused and goes to the gateway-wide dead-letter topic, because no client owns it;
* ``S1.environmentTag`` must equal the configured environment: a UIT message must never reach
  production, and a production message must never be spent on a test platform;
* a DIP ID outside its effective dates is refused (the DIP would reject it, later and less
  clearly);
* ``S1.DIPConnectionProviderID`` is filled with the DCP ID only when the client's ``set_dcp_id``
  says so, and never overwritten: a different value already present is refused;
* schema validation (when the client asks for it) runs last, only on messages that could go.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final, Protocol

from gateway.config import ClientConfig, DipIdConfig, GatewayConfig
from gateway.dip.client import dip_path
from gateway.egress.envelope import STATUS_KIND, MessageKind, OutboundMessage, Refusal, shown
from gateway.egress.reasons import DeadLetterReason
from gateway.schema import SchemaViolation, UnknownInterface, format_violations

STATUS_PATH: Final = "/statusmessage"


class Validator(Protocol):
    def validate(self, payload: dict[str, object]) -> list[SchemaViolation]: ...


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message goes and who it is sent for."""

    client: ClientConfig
    dip_id: DipIdConfig
    path: str
    client_name: str  # ``client.name``, read per record: a pydantic model's reads are slower


@dataclass(slots=True)
class Prepared:
    """A message that passed every pre-flight check, with its route."""

    message: OutboundMessage
    route: Route


@dataclass(frozen=True, slots=True)
class Rejected:
    """A refusal that belongs to a client (its dead-letter topic), or to nobody (``None``)."""

    refusal: Refusal
    client: ClientConfig | None


@dataclass(slots=True)
class _Plan:
    """Everything routing decides from (sender DIP ID, interface) alone, decided once; and
    whether the DIP ID is effective on ``day``, the last day asked (dates change once a day,
    so most messages skip the configuration's date fields)."""

    route: Route
    validates: bool
    day: date | None = None
    effective: bool = False


class Router:
    """Routes parsed messages; built once from the configuration (lookups are dict hits)."""

    def __init__(self, config: GatewayConfig, validator: Validator | None = None) -> None:
        self._environment = config.environment.value
        self._dcp_id = config.dcp.dcp_id
        self._validate_default = config.egress.schema_validation
        self._validator = validator
        self._by_dip_id: dict[str, tuple[ClientConfig, DipIdConfig]] = {
            d.dip_id: (c, d) for c in config.clients for d in c.dip_ids
        }
        self._plans: dict[tuple[str, str], _Plan] = {}

    def client_for(self, dip_id: str | None) -> ClientConfig | None:
        found = self._by_dip_id.get(dip_id) if dip_id is not None else None
        return found[0] if found is not None else None

    def reject(self, refusal: Refusal) -> Rejected:
        """Attach a parse refusal to the client that owns its sender, if any."""
        return Rejected(refusal, self.client_for(refusal.sender_dip_id))

    def prepare(self, message: OutboundMessage, today: date) -> Prepared | Rejected:
        """Apply every rule; may fill ``S1.DIPConnectionProviderID`` (and rebuild the item)."""
        plan = self._plans.get((message.sender_dip_id, message.interface_id))
        if plan is None:
            found = self._plan(message)
            if found is None:
                return Rejected(
                    self._refusal(
                        message,
                        f"unknown sender DIP ID {message.sender_dip_id}: no client of this "
                        "gateway owns it",
                        DeadLetterReason.ROUTING,
                    ),
                    None,
                )
            plan = found
        route = plan.route
        client = route.client
        if plan.day != today:
            plan.effective, plan.day = route.dip_id.effective_on(today), today
        if not plan.effective:
            dip = route.dip_id
            return Rejected(
                self._refusal(
                    message,
                    f"DIP ID {dip.dip_id} is not effective on {today.isoformat()} (effective "
                    f"{_date(dip.effective_from)} to {_date(dip.effective_to)})",
                    DeadLetterReason.NOT_EFFECTIVE,
                ),
                client,
            )
        if message.kind is STATUS_KIND:
            problem = self._check_dcp_id(message, client, message.payload)
            if problem is not None:
                return Rejected(self._refusal(message, problem, DeadLetterReason.ROUTING), client)
            return Prepared(message, route)

        s1: dict[str, object] = message.payload["CommonBlock"]["S1"]  # a DIP message: parsed
        tag = s1.get("environmentTag")
        if tag != self._environment:
            return Rejected(
                self._refusal(
                    message,
                    f"S1.environmentTag {shown(tag)} does not match this gateway's environment "
                    f"{self._environment!r}: refusing to send it here",
                    DeadLetterReason.ENVIRONMENT,
                ),
                client,
            )
        if s1.get("DIPConnectionProviderID") != self._dcp_id:  # else: already this DCP's
            problem = self._check_dcp_id(message, client, s1)
            if problem is not None:
                return Rejected(self._refusal(message, problem, DeadLetterReason.ROUTING), client)
        if plan.validates:
            assert self._validator is not None
            try:
                violations = self._validator.validate(message.payload)
            except UnknownInterface as exc:
                reason = f"cannot validate: {exc.reason}"
                return Rejected(self._refusal(message, reason, DeadLetterReason.SCHEMA), client)
            if violations:
                reason = format_violations(violations)
                return Rejected(self._refusal(message, reason, DeadLetterReason.SCHEMA), client)
        return Prepared(message, route)

    def _plan(self, message: OutboundMessage) -> _Plan | None:
        """Decide and keep the plan of a known sender's interface (``None``: unknown sender).
        Bounded: senders are the configured DIP IDs, interfaces the parser's pattern."""
        found = self._by_dip_id.get(message.sender_dip_id)
        if found is None:
            return None
        client, dip = found
        interface = message.interface_id
        if message.kind is MessageKind.STATUS:
            path, validates = STATUS_PATH, False
        else:
            path = dip_path("dip-channel", interface)
            validates = self._validator is not None and client.validates(
                interface, self._validate_default
            )
        plan = _Plan(Route(client, dip, path, client.name), validates)
        self._plans[(dip.dip_id, interface)] = plan
        return plan

    def _check_dcp_id(
        self, message: OutboundMessage, client: ClientConfig, block: dict[str, object]
    ) -> str | None:
        current = block.get("DIPConnectionProviderID")
        if current is None:
            if client.set_dcp_id:
                block["DIPConnectionProviderID"] = self._dcp_id
                message.replace_payload()
            return None
        if current != self._dcp_id:
            return (
                f"DIPConnectionProviderID {shown(current)} is not this DCP's ID {self._dcp_id}: "
                "the gateway does not overwrite it; correct or clear it"
            )
        return None

    @staticmethod
    def _refusal(message: OutboundMessage, reason: str, cls: DeadLetterReason) -> Refusal:
        return Refusal(message.ref, reason, message.sender_dip_id, message.interface_id, cls)


def _date(value: date | None) -> str:
    return value.isoformat() if value is not None else "(open)"

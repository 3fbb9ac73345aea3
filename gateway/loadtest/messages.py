"""Schema-valid outbound DIP messages for a load test: many senders, several interfaces.

Every message has its own ``senderUniqueReference`` for the whole run (the DIP, and the
simulator, reject a repeated one) and an MPAN core with a correct check digit as its Kafka key,
as a supplier's system would key by meter. Messages are made from one template per
(sender, interface, recipient) with only the per-message fields replaced: building each from
scratch costs more CPU than the gateway spends on it, and the load generator shares the machine.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from gateway.config import GatewayConfig
from gateway.schema.samples import mpan_core, sample_payload

#: A DIP ID no client of the dev PKI has: messages to it are accepted but not pushed back.
OUTSIDE_RECIPIENT = "2300000900"

_REF_MARK = "~REF~"
_MPAN_MARK = "0000000000000"  # no real MPAN core: the check digit of all zeros is not 0


@dataclass(frozen=True)
class Sender:
    dip_id: str
    role: str
    client: str


def senders(config: GatewayConfig, clients: int) -> list[Sender]:
    """The first DIP ID of each of the first ``clients`` clients."""
    if clients > len(config.clients):
        raise ValueError(f"{clients} clients asked for, the PKI has {len(config.clients)}")
    return [
        Sender(c.dip_ids[0].dip_id, c.dip_ids[0].role.value, c.name)
        for c in config.clients[:clients]
    ]


class MessageFactory:
    """(key, value) pairs, round-robin over senders and interfaces, never repeating a
    reference. ``round_trip`` addresses each message to the next client's DIP ID, so the
    simulator pushes it back to the gateway; otherwise to :data:`OUTSIDE_RECIPIENT`."""

    def __init__(self, config: GatewayConfig, *, run_tag: int) -> None:
        self._config = config
        self._dcp_id = config.dcp.dcp_id
        self._environment = config.environment.value
        # The simulator lives for the whole run: references must differ across phases and
        # across runs against a long-lived simulator (``run_tag``, e.g. the start time).
        self._seq = itertools.count(run_tag * 10_000_000)
        self._templates: dict[tuple[str, str, str], tuple[bytes, bytes, bytes]] = {}

    def _template(self, sender: Sender, interface: str, recipient: str) -> tuple[bytes, ...]:
        key = (sender.dip_id, interface, recipient)
        found = self._templates.get(key)
        if found is None:
            payload = sample_payload(
                interface,
                sender_dip_id=sender.dip_id,
                sender_role=sender.role,
                recipients=[recipient],
                seq=0,
                environment_tag=self._environment,
                dcp_id=self._dcp_id,
                mpan=_MPAN_MARK,
                now=datetime.now(UTC),
            )
            s1 = payload["CommonBlock"]["S1"]
            reference: str = s1["senderUniqueReference"]
            stem = reference.rsplit("-", 1)[0]
            s1["senderUniqueReference"] = _REF_MARK
            text = orjson.dumps(payload)
            head, _, rest = text.partition(_REF_MARK.encode())
            if _MPAN_MARK.encode() not in rest:
                raise ValueError(f"{interface} sample has no MPAN after its reference")
            middle, _, tail = rest.partition(_MPAN_MARK.encode())
            found = self._templates[key] = (head + stem.encode() + b"-", middle, tail)
        return found

    def batch(
        self, count: int, senders_: Sequence[Sender], interfaces: Sequence[str], round_trip: bool
    ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        n_senders, n_ifaces = len(senders_), len(interfaces)
        for _ in range(count):
            seq = next(self._seq)
            sender = senders_[seq % n_senders]
            interface = interfaces[(seq // n_senders) % n_ifaces]
            recipient = (
                senders_[(seq + 1) % n_senders].dip_id
                if round_trip and n_senders > 1
                else OUTSIDE_RECIPIENT
            )
            head, middle, tail = self._template(sender, interface, recipient)
            mpan = mpan_core(seq).encode()
            out.append((mpan, b"".join((head, b"%012d" % (seq % 10**12), middle, mpan, tail))))
        return out

    def stream(
        self,
        count: int,
        senders_: Sequence[Sender],
        interfaces: Sequence[str],
        round_trip: bool,
        chunk: int = 5000,
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        """``count`` messages in chunks (a million at once would not fit in memory well)."""
        left = count
        while left > 0:
            take = min(chunk, left)
            yield self.batch(take, senders_, interfaces, round_trip)
            left -= take

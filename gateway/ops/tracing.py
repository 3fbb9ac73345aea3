"""OpenTelemetry tracing: off by default, a span per batch and per webhook push when on.

On when the optional ``tracing`` extra is installed (``pip install 'dcp-gateway[tracing]'``)
and OpenTelemetry's own ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set;
the OTLP exporter reads its other ``OTEL_*`` variables (headers, timeout, ``OTEL_SERVICE_NAME``)
itself. Off, every function here returns at once: no OpenTelemetry import, no per-message work.

Spans: egress ``egress.batch`` (children ``egress.consume``, ``dip.request`` with ``dip.sign``,
``egress.outcome_write``), linked to the trace of each record that carried a ``traceparent``
header; ingress ``ingress.push`` (children ``ingress.verify``, ``ingress.produce``), a child of
the DIP's ``traceparent`` when its request has one. The W3C ``traceparent`` of the span that
wrote them goes on the Kafka records the gateway produces (results, dead letters, inbound).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import structlog

TRACEPARENT = "traceparent"

_log = structlog.get_logger(__name__)


class _State:
    tracer: Any = None  # an opentelemetry Tracer while tracing is on
    provider: Any = None


_state = _State()
_OFF: AbstractContextManager[None] = nullcontext()


def enabled() -> bool:
    return _state.tracer is not None


def configure_from_env() -> bool:
    """Turn tracing on when an OTLP endpoint is configured; False when it stays off."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        _log.warning(
            "tracing_unavailable",
            detail="an OTLP endpoint is set but the tracing extra is not installed: "
            "pip install 'dcp-gateway[tracing]'",
        )
        return False
    name = os.environ.get("OTEL_SERVICE_NAME", "dcp-gateway")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)
    _log.info("tracing_enabled", endpoint=endpoint, service=name)
    return True


def use(provider: Any | None) -> None:
    """Trace through ``provider`` (an SDK TracerProvider), or stop tracing (``None``). The
    provider is the gateway's own, not OpenTelemetry's global one."""
    _state.provider = provider
    _state.tracer = provider.get_tracer("dcp-gateway") if provider is not None else None


def shutdown() -> None:
    """Export what is queued and stop tracing (at exit)."""
    provider = _state.provider
    use(None)
    if provider is not None:
        provider.shutdown()


def span(
    name: str,
    *,
    parent: Any = None,
    links: Sequence[Any] = (),
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Any]:
    """A span around a ``with`` block (the current span's child, or ``parent``'s); it gives
    the span, or ``None`` when tracing is off (then it costs a shared no-op context)."""
    tracer = _state.tracer
    if tracer is None:
        return _OFF
    manager: AbstractContextManager[Any] = tracer.start_as_current_span(
        name, context=parent, links=list(links), attributes=dict(attributes or {})
    )
    return manager


def past_span(
    name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any] | None = None
) -> None:
    """A child of the current span for work timed elsewhere (signing inside the DIP client,
    records waiting in a batch)."""
    tracer = _state.tracer
    if tracer is None:
        return
    done = tracer.start_span(name, start_time=start_ns, attributes=dict(attributes or {}))
    done.end(end_time=max(end_ns, start_ns))


def wall_ns_of(loop_time: float, now_loop_time: float) -> int:
    """Wall-clock nanoseconds of an event-loop time reading (spans use wall time)."""
    return time.time_ns() - int((now_loop_time - loop_time) * 1e9)


def parent_from(headers: Mapping[str, str]) -> Any:
    """The trace context of an HTTP request's ``traceparent`` (``None``: none, or off)."""
    if _state.tracer is None:
        return None
    value = headers.get(TRACEPARENT)
    if value is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({TRACEPARENT: value})


def traceparent_of(headers: Iterable[tuple[str, bytes]] | None) -> bytes | None:
    """The ``traceparent`` header of a Kafka record, if it has one."""
    for key, value in headers or ():
        if key == TRACEPARENT:
            return value
    return None


def links_to(traceparents: Iterable[bytes]) -> list[Any]:
    """Span links to the traces of records that carried a ``traceparent``."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    out = []
    for value in traceparents:
        context = propagator.extract({TRACEPARENT: value.decode("latin-1")})
        linked = trace.get_current_span(context).get_span_context()
        if linked.is_valid:
            out.append(trace.Link(linked))
    return out


def record_headers() -> list[tuple[str, bytes]] | None:
    """``[("traceparent", …)]`` of the current span for a produced Kafka record (``None``:
    off, so the records carry no header at all)."""
    if _state.tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    value = carrier.get(TRACEPARENT)
    return [(TRACEPARENT, value.encode())] if value else None

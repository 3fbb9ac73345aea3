"""What a run leaves behind: ``result.json``, ``summary.md`` and PNG charts (matplotlib, the
``loadtest`` extra; without it the charts are skipped and the summary says so)."""

from __future__ import annotations

import importlib.metadata
import platform
import ssl
from pathlib import Path
from typing import Any

import orjson

from gateway.loadtest.stats import machine

#: The issue's targets, checked where a run measured the figure.
_MB = 1024 * 1024


def headline(doc: dict[str, Any]) -> dict[str, Any]:
    """The top-level figures: totals over every phase (warm-ups and round trips included in
    ``missing``: every record must come back); the rate of the fastest egress phase (of the
    fastest ingress phase in a scenario without egress); latency from :func:`_timed`."""
    phases = doc["phases"]
    egress = [p for p in phases if p["kind"] == "egress"]
    best = max(egress or phases, key=lambda p: p["messages_per_second"], default=None)
    timed = _timed(egress) or best
    missing = sum(
        p["missing"]
        + p.get("warmup", {}).get("missing", 0)
        + p.get("round_trip", {}).get("missing", 0)
        for p in phases
    )
    raw = doc.get("raw_signing") or {}
    out: dict[str, Any] = {
        "produced": sum(p["produced"] for p in phases),
        "delivered": sum(p["delivered"] for p in phases),
        "dead_lettered": sum(p["dead_lettered"] for p in phases),
        "missing": missing,
        "messages_per_second": best["messages_per_second"] if best else 0.0,
        "signatures_per_second": (best or {}).get("signatures_per_second", 0.0),
        "headline_phase": best["label"] if best else None,
        "latency_ms": _latency(timed),
        "latency_phase": timed["label"] if timed else None,
        "latency_is_backlog_wait": bool(timed and timed.get("preloaded")),
        "raw_signatures_per_second": raw.get("signatures_per_second_n"),
        "raw_signatures_per_second_1_thread": raw.get("signatures_per_second_1"),
        "peak_rss_bytes": max((p["peak_rss_bytes"] for p in phases), default=0),
    }
    if raw:
        # Per phase: how close the gateway's signing came to this machine's (batch 1 is the
        # phase where the signatures are the work; batched, far fewer are needed).
        out["signatures_vs_raw"] = {
            p["label"]: p["signatures_per_second"] / raw["signatures_per_second_n"] for p in egress
        }
    base = doc.get("baseline") or {}
    if base.get("messages_per_second"):
        out["baseline_messages_per_second"] = base["messages_per_second"]
        out["gateway_vs_baseline"] = {
            p["label"]: p["messages_per_second"] / base["messages_per_second"] for p in egress
        }
    return out


def _timed(egress: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The phase whose latency is the service's under load: the one offered half of its
    maximum (the issue's reading), else the busiest open-loop phase that kept up with its
    offer (one behind it measures its own queue), else the fastest phase produced while the
    gateway ran; None when every phase was a backlog."""
    live = [p for p in egress if not p["preloaded"] and not p["dip_latency_ms"]]
    half = [p for p in live if p.get("rate_of_max") == 0.5]
    kept_up = [p for p in live if p["messages_per_second"] >= 0.95 * (p["offered_rate"] or 1e18)]
    return max(half or kept_up or live, key=lambda p: p["messages_per_second"], default=None)


def _latency(phase: dict[str, Any] | None) -> dict[str, float]:
    """p50/p95/p99/max ms: Kafka -> DIP acknowledgement, or an ingress push's round trip."""
    if phase is None:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    summary = phase["latency_ms"] if phase["kind"] == "egress" else phase["push_latency_ms"]
    return {k: v for k, v in summary.items() if k != "count"}


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 18 this run has the figures for: value, bound, met."""
    phases = [p for p in doc["phases"] if p["kind"] == "egress"]
    raw = doc.get("raw_signing")
    out: list[dict[str, Any]] = []

    def add(
        name: str, value: float | None, bound: float, higher: bool, unit: str, context: bool = False
    ) -> None:
        """``context``: a figure shown beside a target, not the target's reading (met: None)."""
        if value is None:
            return
        met = None if context else value >= bound if higher else value <= bound
        sign = ">=" if higher else "<="
        out.append(
            {"target": name, "value": value, "bound": f"{sign} {bound:g} {unit}", "met": met}
        )

    plain = [p for p in phases if not p["dip_latency_ms"] and not p["backlog"]]
    batch1 = [p for p in plain if p["batch"] == 1 and p["offered_rate"] is None]
    if batch1 and raw:
        # Against a lone signature (the target's reading) and, for context, against signatures
        # made on every CPU at once as the signing threads make them: where two CPUs share a
        # core, each of those costs more CPU than a lone one.
        cpu = batch1[0]["gateway_cpu_us_per_message"]
        for width, key, context in (
            ("1 thread", "cpu_ms_per_signature_1", False),
            ("all CPUs, for context", "cpu_ms_per_signature_n", True),
        ):
            add(
                f"batch 1: gateway CPU/msg / raw signature CPU ({width})",
                cpu / (raw[key] * 1000),
                1.10,
                False,
                "x",
                context,
            )
    for p in plain:
        if p["batch"] == 500 and p["offered_rate"] is None:
            add(f"{p['label']}: gateway CPU/msg", p["gateway_cpu_us_per_message"], 25, False, "us")
            break
    half = [p for p in plain if p.get("rate_of_max") == 0.5]
    if half:
        p = max(half, key=lambda p: p["batch"])
        add(f"{p['label']}: p99 latency", p["latency_ms"]["p99"], 50, False, "ms")
    slow = {p["batch"]: p for p in phases if p["dip_latency_ms"] >= 150}
    fast = {p["batch"]: p for p in plain if p["offered_rate"] is None}
    if 1 in slow and 1 in fast:
        add(
            "batch 1 throughput with DIP +150 ms / without",
            slow[1]["messages_per_second"] / fast[1]["messages_per_second"],
            0.9,
            True,
            "x",
        )
    for p in phases:
        if p["backlog"] and p["produced"] >= 1_000_000:
            add("peak RSS draining 1,000,000 records", p["peak_rss_bytes"] / _MB, 256, False, "MB")
    ingress = [p for p in doc["phases"] if p["kind"] == "ingress" and p["batch"] == 100]
    if ingress:
        best = max(p["messages_per_second"] for p in ingress)
        add("ingress verified messages/s (pushes of 100)", best, 30_000, True, "msg/s")
    base = (doc.get("baseline") or {}).get("messages_per_second")
    if base:
        for p in plain:
            if p["batch"] == 1 and p["offered_rate"] is None:
                add(
                    "gateway / naive baseline, batch 1",
                    p["messages_per_second"] / base,
                    3,
                    True,
                    "x",
                )
                break
        batched = [p for p in plain if p["batch"] > 1]
        if batched:
            rate = max(p["messages_per_second"] for p in batched)
            add("gateway / naive baseline, batched", rate / base, 100, True, "x")
    return out


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "openssl": ssl.OPENSSL_VERSION}
    for name in ("dcp-gateway", "aiokafka", "aiohttp", "cryptography", "orjson", "uvloop"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write(doc: dict[str, Any], output: Path) -> dict[str, Any]:
    """result.json, the charts and summary.md in ``output``; returns the result document."""
    result = {**headline(doc), "targets": targets(doc), **doc}
    result["machine"] = machine()
    result["versions"] = versions()
    try:
        from gateway.loadtest import charts

        result["charts"] = charts.draw(result, output)
    except ImportError:
        result["charts"] = []
        result["charts_skipped"] = (
            "matplotlib is not installed: pip install 'dcp-gateway[loadtest]'"
        )
    (output / "result.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    (output / "summary.md").write_text(summary(result))
    return result


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _heading(title: str, columns: str) -> list[str]:
    """A section title and a Markdown table's head (``columns`` comma-separated)."""
    names = columns.split(", ")
    return [f"## {title}", "", f"| {' | '.join(names)} |", "|" + "---|" * len(names)]


def _cpus(p: dict[str, Any]) -> str:
    return f"{p['generator_cpus_busy']:.2f} / {p['other_cpus_busy']:.2f} / {p['steal_cpus']:.2f}"


def _stage_table(egress: list[dict[str, Any]]) -> list[str]:
    """Where a request's time went, from the gateway's own histograms (means per request)."""
    lines = _heading(
        "Where a request's time went (gateway histograms, means per request)",
        "phase, msgs/request, signing ms (wait for a thread + RSA), DIP round trip ms, "
        "first record's age at the answer ms",
    )
    for p in egress:
        st = p.get("stages") or {}
        lines.append(
            f"| {p['label']} | {_n(st.get('messages_per_request'), 1)} | "
            f"{_n(st.get('sign_ms'), 1)} | {_n(st.get('dip_round_trip_ms'), 1)} | "
            f"{_n(st.get('first_record_age_ms'), 1)} |"
        )
    return [
        *lines,
        "",
        "The first record's age is its wait in Kafka and in the open batch (linger), the wait "
        "for a request slot, the signature and the round trip: what the other columns leave of "
        "it is the consuming and batching.",
    ]


def _failure(r: dict[str, Any]) -> list[str]:
    failed = r.get("failed")
    if not failed:
        return []
    return [
        f"**The run stopped: phase {failed['phase']} failed: {failed['error']}.** The phases "
        "before it are reported below; the gateway's output is in logs/.",
        "",
    ]


def summary(r: dict[str, Any]) -> str:
    m, v = r["machine"], r["versions"]
    lines = [
        f"# dcp-gateway loadtest: {r['scenario']}",
        "",
        r["description"],
        "",
        f"Command: `{r['command']}`",
        "",
        f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model', '?')}), "
        f"{m.get('memory_bytes', 0) / 2**30:.1f} GiB, {m.get('platform')}; load average at "
        f"the end {', '.join(f'{x:.2f}' for x in m['load_average'])}. Broker: {r['broker']}; "
        f"simulator: {r['simulator']}; both on the same machine as the gateway unless given.",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
        "Figures from a shared or virtual machine move with its other load. Each phase says "
        "how many CPUs went elsewhere while it was measured: to the load generator (this "
        "command: producing and reading records), to other processes (the broker, the "
        "ingress phases' pusher, and anything else running), and to other guests of the "
        "hypervisor (steal). Compare runs made back "
        "to back, and read a phase whose others column is high as a busy-machine figure.",
        "",
        *_failure(r),
        "## Totals",
        "",
        f"produced {r['produced']:,}, delivered {r['delivered']:,}, dead-lettered "
        f"{r['dead_lettered']:,} (measured messages), **missing {r['missing']:,}** (warm-ups "
        f"and round trips included); fastest phase ({r['headline_phase']}): "
        f"{_n(r['messages_per_second'])} msgs/s, {_n(r['signatures_per_second'], 1)} "
        f"signatures/s; latency p50 / p99 {_n(r['latency_ms']['p50'], 1)} / "
        f"{_n(r['latency_ms']['p99'], 1)} ms ({r['latency_phase']}"
        f"{': a backlog, its wait in Kafka' if r.get('latency_is_backlog_wait') else ''}); "
        "peak gateway RSS "
        f"{r['peak_rss_bytes'] / 2**20:,.0f} MB.",
        "",
    ]
    raw = r.get("raw_signing")
    if raw:
        lines += [
            f"Raw RSA-{raw.get('bits', '?')} signing with the same key: "
            f"{raw['signatures_per_second_1']:,.0f} sig/s "
            f"on 1 thread ({raw['cpu_ms_per_signature_1']:.2f} ms CPU each), "
            f"{raw['signatures_per_second_n']:,.0f} sig/s on {raw['threads']} threads "
            f"({raw['cpu_ms_per_signature_n']:.2f} ms).",
            "",
        ]
    base = r.get("baseline")
    if base and "messages_per_second" in base:
        lines += [
            f"Naive baseline (consume one, sign, POST, commit): {base['messages_per_second']:,.1f}"
            f" msgs/s over {base['messages']} messages.",
            "",
        ]
    elif base:
        lines += [f"Naive baseline: not run ({base.get('skipped', 'no figures')}).", ""]
    vs_raw = r.get("signatures_vs_raw") or {}
    vs_base = r.get("gateway_vs_baseline") or {}
    egress = [p for p in r["phases"] if p["kind"] == "egress"]
    if egress:
        lines += _heading(
            "Egress phases (Kafka -> gateway -> DIP simulator -> result in Kafka)",
            "phase, batch, clients, offered/s, msgs/s, sig/s, sig/s / raw, msgs/s / baseline, "
            "p50 / p95 / p99 / max ms, "
            "gw CPU us/msg, gw CPUs busy, peak RSS MB, delivered / dead / missing, DIP status, "
            "sim us/msg, CPUs: generator / others / steal",
        )
        for p in egress:
            lat = p["latency_ms"]
            queued = "*" if p["preloaded"] else ""
            lines.append(
                f"| {p['label']} | {p['batch']} | {p['clients']} | {_n(p['offered_rate'])} | "
                f"{_n(p['messages_per_second'])} | {_n(p['signatures_per_second'], 1)} | "
                f"{_n(vs_raw.get(p['label']), 2)} | {_n(vs_base.get(p['label']), 1)} | "
                f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f}"
                f"{queued} | {_n(p['gateway_cpu_us_per_message'], 1)} | "
                f"{p['gateway_cpus_busy']:.2f} | {p['peak_rss_bytes'] / 2**20:,.0f} | "
                f"{p['delivered']:,} / {p['dead_lettered']:,} / {p['missing']:,} | "
                f"{', '.join(f'{k}: {n}' for k, n in sorted(p['dip_status'].items()))} | "
                f"{_n(p['simulator_cpu_us_per_message'], 1)} | {_cpus(p)} |"
            )
        lines += [
            "",
            "sig/s / raw: the phase's signatures/s over the raw all-CPU signing rate above (at "
            "batch 1 a signature per message, so the share of the machine's signing the "
            "gateway reached). msgs/s / baseline: over the naive baseline's msgs/s. "
            "Latency is from a record's Kafka timestamp to the DIP's acknowledgement of it. "
            "\\* the phase's messages were all in Kafka before the gateway started (a backlog: "
            "no load generator competing for CPU), so its latency includes the wait in the "
            "backlog; latency under load is measured by the open-loop phases (offered/s).",
        ]
        lines += ["", *_stage_table(egress)]
        lines.append("")
        for p in egress:
            if p.get("diverted_to_retry_topics"):
                lines.append(
                    f"{p['label']}: {p['diverted_to_retry_topics']:,} records went through their "
                    "client's retry topic (a client above its share of the in-flight window "
                    "while the window was full, or held by the DIP)."
                )
            warm = p.get("warmup") or {}
            if warm.get("missing"):
                lines.append(
                    f"{p['label']}: warm-up: {warm['missing']:,} of {warm['produced']:,} missing."
                )
            if "round_trip" in p:
                t = p["round_trip"]
                lines.append(
                    f"{p['label']}: the simulator pushed accepted messages back to the webhook: "
                    f"{t['received']:,} of {t['expected']:,} reached the clients' inbound "
                    f"topics (missing {t['missing']:,}, written twice "
                    f"{t.get('duplicates', 0):,})."
                )
            for reason, n in p["dead_letter_reasons"].items():
                lines.append(f"{p['label']}: dead-lettered x{n}: {reason}")
        lines.append("")
    ingress = [p for p in r["phases"] if p["kind"] == "ingress"]
    if ingress:
        lines += _heading(
            "Ingress phases (pre-signed DIP pushes -> webhook -> client topics)",
            "phase, offered pushes/s, pushes/s, msgs/s, push p50 / p95 / p99 / max ms, "
            "gw CPU us/msg, gw CPUs busy, peak RSS MB, delivered / missing / twice, answers, "
            "CPUs: generator / others / steal",
        )
        for p in ingress:
            lat = p["push_latency_ms"]
            lines.append(
                f"| {p['label']} | {_n(p['offered_push_rate'])} | {p['pushes_per_second']:,.1f} | "
                f"{p['messages_per_second']:,.0f} | {lat['p50']:.1f} / {lat['p95']:.1f} / "
                f"{lat['p99']:.1f} / {lat['max']:.1f} | {_n(p['gateway_cpu_us_per_message'], 1)} | "
                f"{p['gateway_cpus_busy']:.2f} | {p['peak_rss_bytes'] / 2**20:,.0f} | "
                f"{p['delivered']:,} / {p['missing']:,} / {p['duplicates']:,} | "
                f"{p['push_statuses']} | {_cpus(p)} |"
            )
        lines.append("")
    if r["targets"]:
        lines += _heading("Targets (issue 18)", "target, value, bound, met")
        for t in r["targets"]:
            met = "-" if t["met"] is None else "yes" if t["met"] else "no"
            lines.append(f"| {t['target']} | {t['value']:,.3g} | {t['bound']} | {met} |")
        lines.append("")
    if r["charts"]:
        lines += ["## Charts", ""] + [f"![{c}]({c})" for c in r["charts"]] + [""]
    elif r.get("charts_skipped"):
        lines += [f"Charts: {r['charts_skipped']}", ""]
    return "\n".join(lines)

"""PNG charts of a run (matplotlib, headless). Each is drawn only when the run has the data:
two or more offered rates, two or more batch sizes, latencies, RSS readings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_MB = 1024 * 1024


def draw(result: dict[str, Any], output: Path) -> list[str]:
    """The file names written in ``output``."""
    phases = result["phases"]
    egress = [p for p in phases if p["kind"] == "egress"]
    ingress = [p for p in phases if p["kind"] == "ingress"]
    written: list[str] = []
    by_batch: dict[int, list[dict[str, Any]]] = {}
    for p in egress:
        if p["offered_rate"] and not p["dip_latency_ms"]:
            by_batch.setdefault(p["batch"], []).append(p)
    swept = max(by_batch.values(), key=len, default=[])  # one batch size's sweep
    if len(swept) >= 2:
        points = [
            (p["offered_rate"], p["messages_per_second"], p["latency_ms"]["p99"]) for p in swept
        ]
        name = "throughput_vs_offered_rate.png"
        written.append(_versus(output, name, points, "offered msgs/s", diagonal=True))
    plain = [p for p in egress if not p["dip_latency_ms"] and not p["backlog"]]
    flat = {p["batch"]: p for p in reversed(plain) if not p["offered_rate"]}
    half = {p["batch"]: p for p in reversed(plain) if p.get("rate_of_max") == 0.5}
    if len(flat) >= 2:
        # p99 under load: from the open-loop phase at half of the batch size's maximum, or
        # the flat-out phase itself when its messages were produced while it ran; none for a
        # backlog (its latency is mostly the wait in Kafka before the gateway started).
        points = [
            (b, p["messages_per_second"], _p99_under_load(half.get(b), p)) for b, p in flat.items()
        ]
        points.sort()
        written.append(
            _versus(output, "throughput_vs_batch_size.png", points, "batch size", log=True)
        )
    pushed = [p for p in ingress if p["offered_push_rate"]]
    if len(pushed) >= 2:
        points = [
            (
                p["offered_push_rate"] * p["batch"],
                p["messages_per_second"],
                p["push_latency_ms"]["p99"],
            )
            for p in pushed
        ]
        written.append(
            _versus(output, "ingress_vs_offered_rate.png", points, "offered msgs/s", diagonal=True)
        )
    if any(p["latency_cdf"] for p in phases):
        written.append(_cdf(output, phases))
    if any(p["rss_series"] for p in phases):
        written.append(_rss(output, phases))
    return written


def _p99_under_load(half: dict[str, Any] | None, flat: dict[str, Any]) -> float:
    if half is not None:
        return float(half["latency_ms"]["p99"])
    return math.nan if flat["preloaded"] else float(flat["latency_ms"]["p99"])


def _versus(
    output: Path,
    name: str,
    points: list[tuple[float, float, float]],
    xlabel: str,
    log: bool = False,
    diagonal: bool = False,
) -> str:
    """Throughput (left axis) and p99 latency (right, log) against ``xlabel``; ``diagonal``
    draws achieved = offered, which the throughput line leaves at the knee."""
    xs, rates, p99s = zip(*points, strict=True)
    fig, left = plt.subplots(figsize=(7, 4))
    if diagonal:
        left.plot(xs, xs, ":", color="grey", label="achieved = offered")
    left.plot(xs, rates, "o-", color="tab:blue", label="achieved msgs/s")
    left.set_xlabel(xlabel)
    left.set_ylabel("achieved msgs/s", color="tab:blue")
    if log:
        left.set_xscale("log")
    right = left.twinx()
    if not all(math.isnan(v) for v in p99s):  # a gap where a point has no latency under load
        right.plot(xs, p99s, "s--", color="tab:red", label="p99 latency")
        right.set_yscale("log")
    right.set_ylabel("p99 latency (ms)", color="tab:red")
    left.grid(alpha=0.3)
    lines = [*left.get_lines(), *right.get_lines()]
    left.legend(handles=lines, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(output / name, dpi=100)
    plt.close(fig)
    return name


def _cdf(output: Path, phases: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(7, 4))
    for p in phases:
        if p["latency_cdf"]:
            ms, share = zip(*p["latency_cdf"], strict=True)
            what = "push" if p["kind"] == "ingress" else "Kafka -> DIP ack"
            ax.plot(ms, share, label=f"{p['label']} ({what})")
    ax.set_xscale("log")
    return _save(
        fig, ax, output, "latency_cdf.png", "latency (ms)", "share of messages at or below"
    )


def _rss(output: Path, phases: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(7, 4))
    for p in phases:
        if p["rss_series"]:
            ax.plot(
                [s["t"] for s in p["rss_series"]],
                [s["rss"] / _MB for s in p["rss_series"]],
                label=p["label"],
            )
    xlabel = "seconds since the gateway was ready"
    return _save(fig, ax, output, "rss_over_time.png", xlabel, "gateway RSS (MB)")


def _save(fig: Any, ax: Any, output: Path, name: str, xlabel: str, ylabel: str) -> str:
    """A chart with one line per phase: labels, grid, legend, written as ``name``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output / name, dpi=100)
    plt.close(fig)
    return name

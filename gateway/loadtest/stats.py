"""Latency histograms (HDR: constant relative error from 1 µs to an hour, fixed memory) and
resource readings of another process from ``/proc`` (its CPU time and resident memory)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class Latency:
    """Latencies in microseconds, 3 significant digits, up to an hour."""

    def __init__(self) -> None:
        self._h = HdrHistogram(1, 3_600_000_000, 3)

    def record_ms(self, ms: float) -> None:
        self._h.record_value(max(1, round(ms * 1000)))

    def record_seconds(self, seconds: float) -> None:
        self._h.record_value(max(1, round(seconds * 1e6)))

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def summary_ms(self) -> dict[str, float]:
        """p50/p95/p99/max in ms (zeros when nothing was recorded, with ``count`` 0)."""
        h = self._h
        if not self.count:
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "count": 0}
        return {
            "p50": h.get_value_at_percentile(50) / 1000,
            "p95": h.get_value_at_percentile(95) / 1000,
            "p99": h.get_value_at_percentile(99) / 1000,
            "max": h.get_max_value() / 1000,
            "count": self.count,
        }

    def cdf_ms(self, points: int = 60) -> list[tuple[float, float]]:
        """(latency ms, share of messages at or below it), for a CDF chart."""
        if not self.count:
            return []
        out = []
        for i in range(points + 1):
            pct = 100.0 * (1 - 10 ** (-4 * i / points))  # denser towards the tail
            out.append((self._h.get_value_at_percentile(pct) / 1000, pct / 100))
        return out


@dataclass(frozen=True)
class ProcReading:
    at: float  # time.monotonic()
    cpu_seconds: float  # user + system, the process and its threads
    rss_bytes: int
    peak_rss_bytes: int  # VmHWM: the highest resident set so far


def read_proc(pid: int) -> ProcReading | None:
    """The process's CPU and memory now; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        peak = 0
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
                    break
    except (OSError, IndexError, ValueError):
        return None
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    return ProcReading(time.monotonic(), cpu, int(fields[21]) * _PAGE, peak)


@dataclass
class ProcSeries:
    """Readings of one process over a phase (for the RSS-over-time chart)."""

    pid: int
    readings: list[ProcReading] = field(default_factory=list)

    def sample(self) -> ProcReading | None:
        reading = read_proc(self.pid)
        if reading is not None:
            self.readings.append(reading)
        return reading

    @property
    def peak_rss_bytes(self) -> int:
        return max((r.peak_rss_bytes for r in self.readings), default=0)

    def rss_series(self, since: float) -> list[tuple[float, int]]:
        return [(r.at - since, r.rss_bytes) for r in self.readings]

    def as_json(self, since: float) -> list[dict[str, Any]]:
        return [
            {"t": round(r.at - since, 3), "rss": r.rss_bytes, "cpu": round(r.cpu_seconds, 3)}
            for r in self.readings
        ]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import platform

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as handle:
            info["memory_bytes"] = int(handle.readline().split()[1]) * 1024
    except OSError:
        pass
    info["load_average"] = os.getloadavg()
    return info


def busy_seconds() -> float:
    """CPU seconds every process on the machine has used (all CPUs, /proc/stat: everything
    but idle and I/O wait): with the gateway's, the simulator's and the load generator's own,
    it shows how much of the machine something else took during a phase."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(f) for f in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, _steal = fields
    return (user + nice + system + irq + softirq) / _TICK


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests (all CPUs): a run with steal is not
    comparable with one without."""
    try:
        with open("/proc/stat") as handle:
            return int(handle.readline().split()[8]) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0

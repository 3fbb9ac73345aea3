"""How many CPUs this process may really use (signing threads, key-loading workers)."""

from __future__ import annotations

import math
import os


def available_cpus() -> int:
    """CPUs this process may really use: the cgroup quota (a Kubernetes CPU limit) and the
    affinity mask, not the node's core count that ``os.cpu_count()`` reports."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus

"""Resident memory (RSS) of the pipeline's processes, sampled in a background thread.

Processes are grouped by role from their command line, so a role with several processes (gunicorn's
master and workers, Celery's main process and its prefork children) reports both its largest
single process and its total."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024

# (role, words that must all appear in the command line), first match wins.
ROLE_PATTERNS: list[tuple[str, tuple[str, ...]]] = [
    ("chdb-gateway", ("warehouse", "chdb-gateway")),
    ("sink", ("consumers", "sink")),
    ("transformer", ("consumers", "transformer")),
    ("celery-beat", ("celery", "beat")),
    ("celery-worker", ("celery", "worker")),
    ("watermark", ("manage.py", "pipeline_watermark")),
    ("web", ("gunicorn",)),
    ("relay", ("outbox_relay",)),
]


def role_of(cmdline: list[str]) -> str | None:
    if cmdline and cmdline[0].endswith("py-spy"):
        return None  # the profiler wrapping a role is not the role
    words = set(cmdline)
    joined = " ".join(cmdline)
    for role, needed in ROLE_PATTERNS:
        if all(w in words or w in joined for w in needed):
            return role
    return None


@dataclass
class Sample:
    at: float
    rss_by_pid: dict[int, tuple[str, float]]  # pid -> (role, MB)


@dataclass
class MemoryLog:
    samples: list[Sample] = field(default_factory=list)

    def phase(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]

    @staticmethod
    def peaks(samples: list[Sample]) -> dict[str, dict[str, float]]:
        """Per role: the largest single process and the largest total over the samples (MB)."""
        result: dict[str, dict[str, float]] = {}
        for sample in samples:
            totals: dict[str, float] = defaultdict(float)
            largest: dict[str, float] = defaultdict(float)
            counts: dict[str, int] = defaultdict(int)
            for role, mb in sample.rss_by_pid.values():
                totals[role] += mb
                largest[role] = max(largest[role], mb)
                counts[role] += 1
            for role in totals:
                entry = result.setdefault(role, {"max_process_mb": 0.0, "total_mb": 0.0, "processes": 0})
                entry["max_process_mb"] = round(max(entry["max_process_mb"], largest[role]), 1)
                entry["total_mb"] = round(max(entry["total_mb"], totals[role]), 1)
                entry["processes"] = max(entry["processes"], counts[role])
        return result

    @staticmethod
    def growth(samples: list[Sample]) -> dict[str, float]:
        """Per role: largest process's mean RSS over the last fifth of the samples minus the second
        fifth (MB); the first fifth is the warm-up (imports, connections, first batch). A process
        that keeps growing shows up here; a flat one stays within a few MB."""
        if len(samples) < 5:
            return {}
        fifth = max(1, len(samples) // 5)

        def mean_largest(part: list[Sample]) -> dict[str, float]:
            sums: dict[str, list[float]] = defaultdict(list)
            for sample in part:
                per_role: dict[str, float] = defaultdict(float)
                for role, mb in sample.rss_by_pid.values():
                    per_role[role] = max(per_role[role], mb)
                for role, mb in per_role.items():
                    sums[role].append(mb)
            return {role: sum(v) / len(v) for role, v in sums.items()}

        first, last = mean_largest(samples[fifth : 2 * fifth]), mean_largest(samples[-fifth:])
        return {role: round(last[role] - first[role], 1) for role in first if role in last}


class MemorySampler:
    """Samples every `interval` seconds the processes `roots()` returns and their descendants."""

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.5) -> None:
        self._roots = roots
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.log = MemoryLog()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample_once(self) -> Sample:
        found: dict[int, tuple[str, float]] = {}
        for pid in self._roots():
            try:
                root = psutil.Process(pid)
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for process in processes:
                try:
                    role = role_of(process.cmdline())
                    if role is not None:
                        found[process.pid] = (role, process.memory_info().rss / MB)
                except psutil.Error:
                    continue
        sample = Sample(time.monotonic(), found)
        self.log.samples.append(sample)
        return sample

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self._interval)

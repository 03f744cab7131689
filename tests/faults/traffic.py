"""The load a failover test runs through: workers on their hosts, and two producers, one
adding with ``replicate=1`` and one without, each writing down the adds that returned; then
the accounting of what became of every acknowledged add."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .hosts import Host, agent, stop, wait_for
from .services import acked, look, refused, runs

#: Acknowledged adds each producer must make before the primary dies, and again after.
ADDS_BEFORE = 300
ADDS_AFTER = 300


class Traffic:
    """Producers and workers against one store URL (``plain_url`` for the producer that
    does not ask for replication)."""

    def __init__(
        self, tmp: Path, url: str, plain_url: str, producer: Host, workers: list[Host]
    ) -> None:
        self.tmp = tmp
        self.url = url
        self.plain_url = plain_url
        self.producer = producer
        self.workers = workers
        self.files = {"replicated": tmp / "acked-replicated", "plain": tmp / "acked-plain"}
        self.producers: list[Any] = []
        self.worker_processes: list[Any] = []
        self.checkpoint: dict[str, int] = {}

    def start(self) -> None:
        """Start the workers, then both producers (jobs leased for 5 s: a claim whose
        reply died with the primary leaves its jobs leased, delivered again after that)."""
        for host in self.workers:
            self.worker_processes.append(host.popen(
                agent("worker", self.url, "--host", host.name, "--concurrency", "10",
                      "--runs", str(self.tmp / f"runs-{host.name}"),
                      "--stats", str(self.tmp / f"stats-{host.name}.json")),
                log=self.tmp / f"worker-{host.name}.log",
            ))  # fmt: skip
        for name, url, extra in (
            ("replicated", self.url, ["--replicate", "1"]),
            ("plain", self.plain_url, []),
        ):
            self.producers.append(self.producer.popen(
                agent("produce", url, "--count", str(10**9), "--batch", "5",
                      "--retry-after", "5", "--stop-file", str(self.tmp / "stop"),
                      "--acked", str(self.files[name]),
                      "--refused", str(self.tmp / f"refused-{name}"), *extra),
                log=self.tmp / f"producer-{name}.log",
            ))  # fmt: skip

    def wait_adds(self, count: int, what: str) -> None:
        """Wait until each producer made ``count`` more acknowledged adds than at the last
        call."""
        base = dict(self.checkpoint)
        wait_for(
            lambda: all(
                len(acked(file)) >= base.get(name, 0) + count for name, file in self.files.items()
            ),
            120, what,
        )  # fmt: skip
        self.checkpoint = {name: len(acked(file)) for name, file in self.files.items()}

    def finish(self, host: Host, explain: Callable[[], str] | None = None) -> None:
        """Stop the producers, wait (from ``host``) until no job is pending, stop workers."""
        (self.tmp / "stop").touch()
        for process in self.producers:
            process.wait(60)
        wait_for(
            lambda: _pending(look(host, self.url)["states"]) == 0, 120, "every job done",
            pause=1, explain=explain,
        )  # fmt: skip
        for process in self.worker_processes:
            stop(process)

    def account(
        self, host: Host, killed_at: float, store: str, plain: str, record: Callable[..., None]
    ) -> dict[str, tuple[int, int, int, int]]:
        """Look up every acknowledged add (from ``host``), record a row per producer, and
        return (acknowledged, done, lost, duplicates) by producer."""
        ran = runs([self.tmp / f"runs-{host.name}" for host in self.workers])
        rows = {}
        for name, label in (("replicated", "replicate=1"), ("plain", plain)):
            adds = acked(self.files[name])
            states = look(host, self.url, self.files[name])["jobs"]
            done = sum(1 for job in states.values() if job["state"] == "done")
            lost = sum(1 for job in states.values() if job["state"] == "JobNotFound")
            recovery = _recovery(sorted(adds.values()), killed_at)
            duplicates = sum(ran[job_id] - 1 for job_id in adds if ran[job_id] > 1)
            tried = len(adds) + refused(self.tmp / f"refused-{name}")
            record(f"{store} failover, {label}", tried, len(adds), done, lost, duplicates,
                   recovery)  # fmt: skip
            rows[name] = (len(adds), done, lost, duplicates)
        return rows


def _recovery(times: list[float], killed_at: float) -> float:
    """From the kill to the end of the longest pause in acknowledged adds around it (an add
    in flight at the kill may still return just after it)."""
    around = [t for t in times if t >= killed_at - 1]
    gaps = [(later - earlier, later) for earlier, later in itertools.pairwise(around)]
    _, resumed = max(gaps, default=(0.0, killed_at))
    return max(0.0, resumed - killed_at)


def _pending(states: dict[str, int]) -> int:
    return states["queued"] + states["active"] + states["scheduled"]

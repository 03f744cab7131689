"""A client's flows: chains and groups of jobs that wait for each other (job
dependencies), added in one store call, and a dependant's view of its parents.

This file is the asyncio source; ``client_flows.py`` beside it is generated from it by
``scripts/unasync.py``. The client class takes it as a base.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence

from .errors import InvalidOption
from .flows import GROUP_TRIGGERS, Group, GroupTrigger, Step
from .job import DependencyPolicy, Job, check_dependencies
from .stores.store_async import AsyncStore


class AsyncClientFlows(abc.ABC):
    """Chains, groups and parents, on the client's ``store``."""

    store: AsyncStore

    @abc.abstractmethod
    def _step_job(self, step: Step, now: float) -> Job:
        """The new job of one step, under the client's options and the step's."""

    @abc.abstractmethod
    async def _add_jobs(self, queue: str, jobs: list[Job], connection: object) -> dict[str, str]:
        """Hand made jobs to the store in one call (the client's add path)."""

    async def add_chain(
        self,
        *steps: Step,
        after: Iterable[str] | None = None,
        connection: object = None,
    ) -> list[str]:
        """Add jobs that run one after the other: each waits for the one before it to be
        done (a link that fails for good, or is cancelled, ends the rest the same way).
        ``after``: ids of existing jobs the first step waits for. All the jobs are added
        in one store call, or none. Returns their ids, in order."""
        if not steps:
            raise InvalidOption("steps", steps, "a chain has at least one step")
        parents = () if after is None else check_dependencies(after, "fail")
        now = self.store.clock.now()
        jobs: list[Job] = []
        for step in steps:
            job = self._step_job(step, now)
            job.depends_on = (jobs[-1].id,) if jobs else parents
            jobs.append(job)
        await self._add_jobs(jobs[0].queue, jobs, connection)
        return [job.id for job in jobs]

    async def add_group(
        self,
        steps: Sequence[Step],
        *,
        then: Step | None = None,
        on: GroupTrigger = "success",
        after: Iterable[str] | None = None,
        connection: object = None,
    ) -> Group:
        """Add jobs that run side by side, and optionally ``then``, a callback that waits
        for all of them: once every one is done (``on="success"``; a member failing for
        good fails the callback), or once every one has ended however (``"completion"``).
        The callback reads its members' results with :meth:`parents`. ``after``: ids of
        existing jobs every member waits for. All are added in one store call, or none."""
        if not steps:
            raise InvalidOption("steps", steps, "a group has at least one step")
        if on not in GROUP_TRIGGERS:
            raise InvalidOption("on", on, '"success" or "completion"')
        parents = () if after is None else check_dependencies(after, "fail")
        now = self.store.clock.now()
        jobs = [self._step_job(step, now) for step in steps]
        for job in jobs:
            job.depends_on = parents
        callback = None
        if then is not None:
            callback = self._step_job(then, now)
            callback.depends_on = tuple(job.id for job in jobs)
            policy: DependencyPolicy = "fail" if on == "success" else "run"
            callback.on_dependency_failure = policy
        everything = jobs if callback is None else [*jobs, callback]
        await self._add_jobs(jobs[0].queue, everything, connection)
        return Group([job.id for job in jobs], None if callback is None else callback.id)

    async def parents(self, job: Job) -> list[Job | None]:
        """The jobs ``job`` waited for (its ``depends_on``), in order, each as ``show``
        returns it (its ``state``, ``result``, ``last_error``); None for one the store no
        longer keeps (a done job is kept for its ``result_ttl``)."""
        return [await self.store.show(parent) for parent in job.depends_on]

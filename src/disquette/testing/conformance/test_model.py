"""Random operation sequences against a small reference model: every store must agree.

The model is deliberately naive (lists and linear scans) so that it is obviously right;
the stores use heaps and indexes. Time moves only through ``advance``.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from disquette import Client, JobState, ManualClock, connect
from disquette.errors import InvalidState, JobNotFound

from . import ConformanceStore

QUEUES = ["a", "b", "c"]
RESULT_TTL = 100.0


@dataclasses.dataclass
class ModelJob:
    queue: str
    priority: int
    run_at: float
    seq: int
    retry_after: float
    max_attempts: int
    expires_at: float | None
    state: JobState = JobState.QUEUED
    lease_until: float | None = None
    attempts: int = 0
    nacks: int = 0
    additional_deliveries: int = 0
    error_count: int = 0
    #: Queued because its lease ran out, and no claim took it since: its delivery (here, a
    #: call by id) still holds it, and acting on it takes the requeue back.
    lapsed: bool = False

    def held(self) -> bool:
        return self.state is JobState.ACTIVE or (self.state is JobState.QUEUED and self.lapsed)

    def take_back_lapse(self) -> None:
        if self.lapsed:
            self.lapsed = False
            self.additional_deliveries -= 1


class Model:
    def __init__(self) -> None:
        self.now = 0.0
        self.jobs: dict[str, ModelJob] = {}
        self.seq = itertools.count()

    def tick(self) -> None:
        for job_id, job in list(self.jobs.items()):
            if job.expires_at is not None and job.expires_at <= self.now:
                del self.jobs[job_id]
            elif job.state is JobState.SCHEDULED and job.run_at <= self.now:
                job.state = JobState.QUEUED
            elif (
                job.state is JobState.ACTIVE
                and job.lease_until is not None
                and job.lease_until <= self.now
            ):
                job.state, job.lease_until = JobState.QUEUED, None
                job.additional_deliveries += 1
                job.lapsed = True

    def get(self, queues: list[str]) -> str | None:
        self.tick()
        for queue in queues:
            ready = [
                (job.priority, job.run_at, job.seq, job_id)
                for job_id, job in self.jobs.items()
                if job.queue == queue and job.state is JobState.QUEUED
            ]
            if ready:
                job_id = min(ready)[3]
                job = self.jobs[job_id]
                job.state = JobState.ACTIVE
                job.attempts += 1
                job.lapsed = False
                job.lease_until = self.now + job.retry_after if job.retry_after > 0 else None
                return job_id
        return None

    def ack(self, job_id: str) -> None:
        self.tick()
        job = self.jobs.get(job_id)
        if job is not None and job.state is not JobState.DONE:
            job.take_back_lapse()
            job.state, job.lease_until = JobState.DONE, None
            job.expires_at = self.now + RESULT_TTL

    def nack(self, job_id: str) -> None:
        self.tick()
        job = self.jobs.get(job_id)
        if job is not None and job.held():
            job.take_back_lapse()
            job.state, job.lease_until = JobState.QUEUED, None
            job.nacks += 1

    def fail(self, job_id: str, backoff: float) -> None:
        self.tick()
        job = self.jobs.get(job_id)
        if job is None or not job.held():
            return
        job.take_back_lapse()
        job.error_count += 1
        job.lease_until = None
        if job.error_count >= job.max_attempts:
            job.state, job.expires_at = JobState.FAILED, None
        else:
            job.run_at = self.now + backoff
            job.state = JobState.QUEUED if job.run_at <= self.now else JobState.SCHEDULED

    def working(self, job_id: str) -> float | type[Exception] | None:
        """The new lease deadline, or the error the call raises."""
        self.tick()
        job = self.jobs.get(job_id)
        if job is None:
            return JobNotFound
        if not job.held():
            return InvalidState
        if job.retry_after <= 0:
            return None
        job.take_back_lapse()
        job.state, job.lease_until = JobState.ACTIVE, self.now + job.retry_after
        return job.lease_until


class StoreAgreesWithModel(RuleBasedStateMachine):
    store: ConformanceStore

    def __init__(self) -> None:
        super().__init__()
        self.tmp = TemporaryDirectory()
        self.clock = ManualClock(start=0.0)
        url = self.store.url(Path(self.tmp.name))
        self.client: Client = connect(url, clock=self.clock, options=None).timeout(0)
        self.model = Model()
        self.ids: list[str] = []

    def teardown(self) -> None:
        self.client.store.close()
        self.tmp.cleanup()

    @rule(
        queue=st.sampled_from(QUEUES),
        priority=st.sampled_from([0, 100, 100, 5]),
        delay=st.sampled_from([0, 0, 0, 1, 2.5, 10]),
        retry_after=st.sampled_from([0, 3, 10, 300]),
        max_attempts=st.integers(1, 3),
        ttl=st.sampled_from([None, None, 5, 50]),
    )
    def add(
        self,
        queue: str,
        priority: int,
        delay: float,
        retry_after: float,
        max_attempts: int,
        ttl: float | None,
    ) -> None:
        client = self.client.priority(priority).delay(delay).retry_after(retry_after)
        client = client.max_attempts(max_attempts).result_ttl(RESULT_TTL)
        if ttl is not None:
            client = client.ttl(ttl)
        job_id = client.add("x", queue)
        now = self.clock.now()
        self.model.tick()
        self.model.jobs[job_id] = ModelJob(
            queue=queue,
            priority=priority,
            run_at=now + delay,
            seq=next(self.model.seq),
            retry_after=retry_after,
            max_attempts=max_attempts,
            expires_at=None if ttl is None else now + ttl,
            state=JobState.QUEUED if delay == 0 else JobState.SCHEDULED,
        )
        self.ids.append(job_id)

    @rule(queues=st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True))
    def get(self, queues: list[str]) -> None:
        expected = self.model.get(queues)
        got = self.client.get_many(*queues, count=1)
        assert [job.id for job in got] == ([expected] if expected else [])

    @precondition(lambda self: self.ids)
    @rule(index=st.integers(0, 10_000))
    def ack(self, index: int) -> None:
        job_id = self.ids[index % len(self.ids)]
        self.model.ack(job_id)
        self.client.ack_many([job_id])

    @precondition(lambda self: self.ids)
    @rule(index=st.integers(0, 10_000))
    def nack(self, index: int) -> None:
        job_id = self.ids[index % len(self.ids)]
        self.model.nack(job_id)
        self.client.nack_many([job_id])

    @precondition(lambda self: self.ids)
    @rule(index=st.integers(0, 10_000))
    def fail(self, index: int) -> None:
        job_id = self.ids[index % len(self.ids)]
        model_job = self.model.jobs.get(job_id)
        errors = model_job.error_count + 1 if model_job else 1
        self.model.fail(job_id, self.client.backoff(errors))
        if model_job is not None:
            self.client.fail(job_id, "boom")

    @precondition(lambda self: self.ids)
    @rule(index=st.integers(0, 10_000))
    def working(self, index: int) -> None:
        job_id = self.ids[index % len(self.ids)]
        expected = self.model.working(job_id)
        if isinstance(expected, type):
            with pytest.raises(expected):
                self.client.working(job_id)
        else:
            assert self.client.working(job_id) == expected

    @rule(seconds=st.sampled_from([0.5, 1, 2, 3, 10, 60]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.now = self.clock.now()

    @invariant()
    def every_job_matches(self) -> None:
        self.model.tick()
        for job_id in self.ids:
            expected = self.model.jobs.get(job_id)
            actual = self.client.store.show(job_id)
            if expected is None:
                assert actual is None, job_id
                continue
            assert actual is not None, job_id
            assert (
                actual.state,
                actual.attempts,
                actual.nacks,
                actual.additional_deliveries,
                actual.error_count,
            ) == (
                expected.state,
                expected.attempts,
                expected.nacks,
                expected.additional_deliveries,
                expected.error_count,
            ), job_id
        for queue in QUEUES:
            ready = sum(
                1
                for job in self.model.jobs.values()
                if job.queue == queue and job.state is JobState.QUEUED
            )
            assert self.client.qlen(queue) == ready


@pytest.mark.requires("results", "failures", "follows_clock")
def test_store_agrees_with_reference_model(conformance_store: ConformanceStore) -> None:
    name = f"{conformance_store.name}Model"
    machine = type(name, (StoreAgreesWithModel,), {"store": conformance_store})
    run = settings(
        max_examples=60,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(machine)
    run.TestCase().runTest()  # type: ignore[attr-defined]  # hypothesis makes it

"""Eager mode with unique keys: a held key adds nothing, so nothing runs."""

from __future__ import annotations

from disquette import App, Job, JobState, Options, enqueue


def test_eager_mode_runs_a_unique_job_only_when_it_was_created() -> None:
    app = App(eager=True)
    calls: list[object] = []

    @app.job(queue="mail")
    def send(job: Job) -> str:
        calls.append(job.body)
        return "sent"

    states = frozenset({JobState.SCHEDULED, JobState.QUEUED, JobState.ACTIVE, JobState.DONE})
    once = send.options.merge(Options(unique_key="welcome:ada", unique_states=states))
    first = enqueue.add_job(app.client, app.eager_registry, once, "hello", "mail")
    assert calls == ["hello"]
    # Done still holds the key: the same id, and the handler does not run again.
    assert enqueue.add_job(app.client, app.eager_registry, once, "again", "mail") == first
    ids = enqueue.add_jobs(app.client, app.eager_registry, once, ["x", "y"], "mail")
    assert ids == [first, first]
    assert calls == ["hello"]
    assert app.client.wait(first, timeout=1) == "sent"
    app.close()

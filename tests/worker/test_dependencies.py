"""Job dependencies under a real worker: a chain and a group's callback run in order, and
the callback reads its members' results through ``parents``."""

from __future__ import annotations

from disquette import Job, JobState
from disquette.app import App


def test_a_worker_runs_a_chain_and_a_group_callback_in_order(store_url: str) -> None:
    app = App(store_url)
    ran: list[str] = []

    @app.job(queue="steps")
    def double(job: Job) -> int:
        (parent,) = app.client.parents(job) or [None]
        base = job.body if parent is None else parent.result
        ran.append(f"double {base}")
        return int(base) * 2

    @app.job(queue="work")
    def square(job: Job) -> int:
        ran.append(f"square {job.body}")
        return int(job.body) ** 2

    @app.job(queue="callbacks")
    def total(job: Job) -> int:
        parents = app.client.parents(job)
        assert all(parent is not None and parent.state is JobState.DONE for parent in parents)
        ran.append("total")
        return sum(parent.result for parent in parents if parent is not None)

    chain = app.client.add_chain(double.step(3), double.step(), double.step())
    group = app.client.add_group([square.step(n) for n in range(1, 5)], then=total.step())
    assert group.callback is not None
    worker = app.worker(concurrency=4)
    worker.start()
    try:
        assert app.client.wait(chain[-1], timeout=20) == 24
        assert app.client.wait(group.callback, timeout=20) == 1 + 4 + 9 + 16
    finally:
        worker.stop()
    assert [step for step in ran if step.startswith("double")] == [
        "double 3",
        "double 6",
        "double 12",
    ]
    assert ran.index("total") > max(ran.index(f"square {n}") for n in range(1, 5))
    app.close()

"""A ``django.tasks`` backend (Django 6): Django's task API, disquette's queue and workers.

In ``settings.py``, beside ``INSTALLED_APPS += ["disquette.contrib.django"]``::

    TASKS = {
        "default": {
            "BACKEND": "disquette.contrib.django.tasks.DisquetteBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"max_attempts": 3, "retry_after": 60},  # any disquette Options
        }
    }

``manage.py disquette worker`` runs the tasks. A task's ``priority`` (Django: -100 to 100,
higher first) becomes the job's (disquette: lower first, default 100) as ``100 -
priority``, so the defaults agree; ``run_after`` becomes a delay; ``queue_name`` the queue.
``get_result`` reads the job: scheduled or queued is ``READY``, active ``RUNNING``, done
``SUCCESSFUL`` (with the ``return_value``), failed or cancelled ``FAILED`` (with the error).
Async tasks are supported; ``aenqueue`` and ``aget_result`` run the sync calls in a thread.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from django.tasks import task_backends
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from ... import enqueue
from ...errors import InvalidJobId, JobNotFound
from ...job import Job, JobState, Options
from . import get_app

#: Jobs of Django tasks have this type, followed by the queue name.
JOB_TYPE_PREFIX: Final = "django.tasks:"

_STATUS: Final = {
    JobState.SCHEDULED: TaskResultStatus.READY,
    JobState.QUEUED: TaskResultStatus.READY,
    JobState.ACTIVE: TaskResultStatus.RUNNING,
    JobState.DONE: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}


def job_priority(task_priority: int) -> int:
    """Django's priority (-100..100, higher runs first) as disquette's (lower first)."""
    return 100 - task_priority


class DisquetteBackend(BaseTaskBackend):  # type: ignore[misc]  # Django ships no types
    """Enqueues Django tasks as disquette jobs on the project's app (see the module)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.job_options = Options(**{key.lower(): value for key, value in self.options.items()})

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Add the task's job; return its ``READY`` result (its id is the job id)."""
        self.validate_task(task)
        now = timezone.now()
        delay = 0.0
        if task.run_after is not None:
            delay = max(0.0, (task.run_after - now).total_seconds())
        options = self.job_options.merge(
            Options(
                type=JOB_TYPE_PREFIX + task.queue_name,
                priority=job_priority(task.priority),
                delay=delay,
            )
        )
        body = {
            "task": task.module_path,
            "args": normalize_json(args),
            "kwargs": normalize_json(kwargs),
        }
        app = get_app()
        job_id = enqueue.add_job(
            app.client, app.eager_registry, options, body, task.queue_name, None
        )
        result = TaskResult(
            task=task,
            id=job_id,
            status=TaskResultStatus.READY,
            enqueued_at=now,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=body["args"],
            kwargs=body["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result as its job says now (``TaskResultDoesNotExist`` when the job
        is unknown, expired, or not a task's)."""
        try:
            job = get_app().client.show(result_id)
        except (JobNotFound, InvalidJobId):
            raise TaskResultDoesNotExist(result_id) from None
        if not (job.type or "").startswith(JOB_TYPE_PREFIX):
            raise TaskResultDoesNotExist(result_id)
        return task_result(job, self.alias)


def _time(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _error(last_error: str) -> TaskError:
    """The stored traceback as Django's error record (the class from its last line)."""
    lines = last_error.strip().splitlines() or ["Exception"]
    name = lines[-1].partition(":")[0].strip() or "Exception"
    path = name if "." in name else f"builtins.{name}"
    return TaskError(exception_class_path=path, traceback=last_error)


def task_result(job: Job, backend: str) -> TaskResult:
    """A task's job as Django's :class:`TaskResult`."""
    body = job.body
    task = import_string(body["task"])
    task = task.using(priority=100 - job.priority, queue_name=job.queue, backend=backend)
    status = _STATUS.get(job.state, TaskResultStatus.READY)
    finished = job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
    result = TaskResult(
        task=task,
        id=job.id,
        status=status,
        enqueued_at=_time(job.created_at),
        started_at=None,
        finished_at=_time(job.finished_at) if finished else None,
        last_attempted_at=None,
        args=body["args"],
        kwargs=body["kwargs"],
        backend=backend,
        errors=[_error(job.last_error)] if job.last_error else [],
        worker_ids=["disquette"] * job.attempts,
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", job.result)
    return result


def run_task(job: Job) -> Any:
    """The handler of every task's job: import the task and call it."""
    body = job.body
    task = import_string(body["task"])
    args, kwargs = body["args"], body["kwargs"]
    if task.takes_context:
        context = TaskContext(task_result=task_result(job, task.backend))
        return normalize_json(task.call(context, *args, **kwargs))
    return normalize_json(task.call(*args, **kwargs))


def register_handlers() -> None:
    """Register :func:`run_task` on the project's app for the queues of every backend of
    ours (done at startup by the Django app)."""
    app = get_app()
    queues: dict[str, None] = {}
    for alias in task_backends.settings:
        backend = task_backends[alias]
        if isinstance(backend, DisquetteBackend):
            queues.update(dict.fromkeys(sorted(backend.queues)))
    for queue in queues:
        if JOB_TYPE_PREFIX + queue not in app.registry:
            app.register(run_task, name=JOB_TYPE_PREFIX + queue, queue=queue)

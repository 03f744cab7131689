"""Run in the Django 6 virtualenv while a worker runs: enqueue tasks, wait, report results."""

import asyncio
import json
import os
import sys
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
import django

django.setup()

from django.tasks import TaskResultStatus, default_task_backend
from django.utils import timezone

from disquette.contrib.django import get_app
from shop import tasks

later = tasks.add.using(run_after=timezone.now() + timedelta(seconds=1)).enqueue(2, 3)
results = {
    "add": tasks.add.enqueue(1, 2),
    "later": later,
    "report": asyncio.run(tasks.report.aenqueue("sales")),
    "explode": tasks.explode.enqueue(),
    "attempt": tasks.attempt.enqueue("first"),
}
client = get_app().client
first = {name: result.status for name, result in results.items()}
report_job = client.show(results["report"].id)
for result in results.values():
    try:
        client.wait(result.id, timeout=60)
    except Exception as exc:  # the failing task: its wait raises JobFailed
        print(type(exc).__name__, file=sys.stderr)
out = {"first": first, "report_job": [report_job.queue, report_job.priority]}
for name, result in results.items():
    fresh = default_task_backend.get_result(result.id)
    result.refresh()
    assert result.status == fresh.status
    row = {"status": fresh.status, "errors": [e.exception_class_path for e in fresh.errors]}
    if fresh.status == TaskResultStatus.SUCCESSFUL:
        row["value"] = fresh.return_value
    out[name] = row
out["mismatch_checked"] = tasks.add.get_result(results["add"].id).id == results["add"].id
print(json.dumps(out))

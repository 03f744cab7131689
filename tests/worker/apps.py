"""Handlers the subprocess tests run with ``python -m disquette worker tests.worker.apps:...``.

Each handler takes its instructions from the job body (file paths to touch or wait for),
so a test can see what a worker process did without sharing memory with it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from disquette import App, Job


def blocking(job: Job) -> dict[str, int]:
    """Write this process's pid to ``<started>.<attempt>``, then wait until the ``release``
    file exists; log the finished attempt to ``<started>.finished``."""
    started = Path(f"{job.body['started']}.{job.attempts}")
    partial = Path(f"{started}.{os.getpid()}.partial")
    partial.write_text(str(os.getpid()))
    partial.rename(started)  # the file appears with its content
    release = Path(job.body["release"])
    while not release.exists():
        time.sleep(0.01)
    with open(f"{job.body['started']}.finished", "a") as finished:
        finished.write(f"{job.attempts} {os.getpid()}\n")
    return {"attempt": job.attempts, "pid": os.getpid()}


def scripted(job: Job) -> int:
    """Log each execution to ``<log>/<pid>.log``; raise as the body's ``n`` dictates:
    multiples of 7 always, multiples of 5 on their first attempt only."""
    n = int(job.body["n"])
    fails = n % 7 == 0 or (n % 5 == 0 and job.attempts == 1)
    with open(Path(job.body["log"]) / f"{os.getpid()}.log", "a") as log:
        log.write(f"{job.id} {job.attempts} {'error' if fails else 'ok'}\n")
    if fails:
        raise RuntimeError(f"job {n} fails on attempt {job.attempts}")
    return n * 2


def stuck(job: Job) -> None:
    """Never returns (for exec timeouts)."""
    while True:
        time.sleep(0.05)


def quick(job: Job) -> object:
    """Returns its body."""
    return job.body


def timed(job: Job) -> None:
    """Append ``start end`` (wall-clock seconds) to ``<log>/<pid>.log``, having slept the
    body's ``sleep`` seconds in between (for the flow-limit tests)."""
    start = time.time()
    time.sleep(float(job.body["sleep"]))
    end = time.time()
    with open(Path(job.body["log"]) / f"{os.getpid()}.log", "a") as log:
        log.write(f"{start!r} {end!r}\n")


handlers = {
    "timed": timed,
    "blocking": blocking,
    "scripted": scripted,
    "stuck": stuck,
    "quick": quick,
}


#: An App whose one handler declares its queue (for the unknown-queue warning).
app = App()


@app.job(queue="mail")
def mail(job: Job) -> object:
    """Returns its body."""
    return job.body

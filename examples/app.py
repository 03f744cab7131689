"""A small disquette app: two kinds of jobs, a producer, a worker.

    cd examples
    python app.py                  # enqueue a few jobs (into ./disquette.db)
    disquette worker app           # run them: `app` in app.py (Ctrl-C stops gracefully)
    disquette stats                # what happened
    disquette worker app -p 2      # two worker processes under a supervisor

``DISQUETTE_URL`` picks another store, e.g. ``postgresql://...`` or ``redis://...``.
"""

from __future__ import annotations

import asyncio
import time

from disquette import Job
from disquette.app import App

app = App()  # $DISQUETTE_URL, else the SQLite file ./disquette.db


@app.job(queue="mail", retry_after=60, max_attempts=5)
def send_welcome_email(job: Job) -> str:
    """A sync handler: runs in the worker's thread pool. Its return value is the result."""
    address = job.body["to"]
    if address.startswith("grace") and job.attempts == 1:
        # Raising records the traceback and retries with exponential backoff.
        raise ConnectionError("SMTP server busy, try again later")
    time.sleep(0.01)  # talking to the SMTP server
    return f"welcome email sent to {address}"


@app.job(queue="images", exec_timeout=30)
async def make_thumbnail(job: Job) -> dict[str, object]:
    """An async handler: runs as a task on the worker's event loop."""
    await asyncio.sleep(0.01)  # fetching and resizing the image
    return {"image": job.body["image"], "size": [128, 128]}


def main() -> None:
    """Enqueue a few jobs and say how to run them."""
    for user in ("ada", "grace", "alan"):
        print("queued", send_welcome_email.add({"to": f"{user}@example.com"}))
    print("queued", make_thumbnail.add({"image": "ada.png"}, priority=10))
    print("now run: disquette worker app   (then: disquette stats)")


if __name__ == "__main__":
    main()

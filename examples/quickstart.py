"""The README's first example: a producer and a consumer on the embedded SQLite default.

Run it with ``bash scripts/quickstart`` (or ``python examples/quickstart.py``).
"""

from __future__ import annotations

import threading
import time

import disquette


def consumer(jobs: disquette.Client, stop: threading.Event) -> None:
    """Take jobs from the leftmost queue that has one, do the work, ack with a result."""
    while not stop.is_set():
        for job in jobs.timeout(0.2).get_many("urgent", "normal", count=50):
            if job.type == "square":
                jobs.ack(job, job.body["n"] ** 2)
            else:
                jobs.fail(job, f"no handler for {job.type!r}")


def main() -> None:
    jobs = disquette.connect()  # $DISQUETTE_URL, else sqlite:///disquette.db
    print(f"store: {jobs.store.url}")
    stop = threading.Event()
    worker = threading.Thread(target=consumer, args=(disquette.connect(), stop))
    worker.start()
    start = time.perf_counter()
    squares = jobs.type("square")
    ids = squares.add_many([{"n": n} for n in range(2000)], "normal")
    urgent = squares.priority(1).add({"n": 12}, "urgent")
    print(f"urgent job {urgent} -> {jobs.wait(urgent, timeout=30)}")
    results = [jobs.wait(job_id, timeout=30) for job_id in ids]
    elapsed = time.perf_counter() - start
    stop.set()
    worker.join()
    assert results == [n * n for n in range(2000)]
    print(f"{len(ids) + 1} jobs added, done and waited for in {elapsed:.2f}s")
    for queue, row in sorted(jobs.stats().by_queue().items()):
        print(f"  {queue:8} done={row.done} queued={row.queued} failed={row.failed}")
    jobs.close()


if __name__ == "__main__":
    main()

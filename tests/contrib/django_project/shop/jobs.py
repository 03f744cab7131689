"""Found by autodiscovery: the handlers of the shop app."""

from disquette import Job
from disquette.contrib.django import app


@app.job(queue="shop")
def send_receipt(job: Job) -> str:
    return f"receipt for order {job.body['order']}"

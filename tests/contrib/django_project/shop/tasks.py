"""Django 6 tasks run by disquette's backend."""

from django.tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="reports", priority=50)
async def report(name: str) -> dict[str, str]:
    return {"report": name}


@task
def explode() -> None:
    raise ValueError("boom")


@task(takes_context=True)
def attempt(context, label: str) -> str:
    return f"{label} attempt {context.attempt}"

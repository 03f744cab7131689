"""Run a coroutine at once, inside the caller, until it first has to wait.

Most commands never wait: the memory store answers inline, and SQLite does too unless
another process holds its lock (see ``stores/adapter.py``). Making a task for each of them
costs a loop iteration and a task object per command, more than the command itself, so the
server starts every command eagerly, as Python 3.12's ``eager_task_factory`` does, and only
the rare command that does wait becomes a task, resumed exactly where it stopped.

Code run eagerly has no current task (``asyncio.current_task()`` is ``None``) until it first
waits: a coroutine that needs one (``asyncio.timeout``) must first wait on something, or be
wrapped in a task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> T | asyncio.Task[T]:
    """Run ``coro`` until it finishes (its result) or waits (a task that finishes it).

    An exception raised before the first wait propagates to the caller.
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    return asyncio.get_running_loop().create_task(_finish(_Rest(coro, waiting_on)))


async def _finish(rest: _Rest[T]) -> T:
    return await rest


class _Rest(Generic[T]):
    """The rest of a started coroutine, as an awaitable a task can drive.

    It hands the task what the coroutine waits on (a future, or ``None`` for a bare
    yield), then forwards what the task sends or throws (a cancellation) into it.
    """

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, T], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, T]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # forwarded, cancellation included
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as stop:
                    result = stop.value
                    return result

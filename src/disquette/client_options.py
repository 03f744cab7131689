"""A client's option layers: the options every call uses, and the derived clients the fluent
setters return. Flavour-free: :class:`~disquette.AsyncClient` and :class:`~disquette.Client`
both take it as a base, and it touches no store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self

from .job import Options


class ClientOptions:
    """The options of a client (see :class:`~disquette.AsyncClient`): :meth:`use` sets them
    for every later call, :meth:`with_options` and the fluent setters derive a client that
    shares the store."""

    _options: Options
    _owns_store: bool

    @property
    def options(self) -> Options:
        """The options every call of this client uses."""
        return self._options

    def use(self, options: Options) -> Self:
        """Set options for every later call of this client; returns the client."""
        self._options = self._options.merge(options)
        return self

    def with_options(self, options: Options) -> Self:
        """A client sharing this one's store, with ``options`` on top of this one's."""
        return self._derived(self._options.merge(options))

    def _derived(self, options: Options) -> Self:
        derived = object.__new__(type(self))
        derived.__dict__.update(self.__dict__)
        derived._options = options
        derived._owns_store = False
        return derived

    def timeout(self, seconds: float | None) -> Self:
        """Derived client whose blocking calls wait at most ``seconds`` (0: do not wait)."""
        return self.with_options(Options(timeout=seconds))

    def replicate(self, copies: int) -> Self:
        """Derived client whose adds return once ``copies`` replicas hold the job."""
        return self.with_options(Options(replicate=copies))

    def delay(self, seconds: float) -> Self:
        """Derived client whose jobs become ready ``seconds`` after they are added."""
        return self.with_options(Options(delay=seconds))

    def retry_after(self, seconds: float) -> Self:
        """Derived client whose jobs are redelivered if not acked within ``seconds``."""
        return self.with_options(Options(retry_after=seconds))

    def ttl(self, seconds: float) -> Self:
        """Derived client whose jobs are deleted ``seconds`` after they are added."""
        return self.with_options(Options(ttl=seconds))

    def max_len(self, jobs: int) -> Self:
        """Derived client whose adds are refused when the queue holds ``jobs`` jobs."""
        return self.with_options(Options(max_len=jobs))

    def priority(self, priority: int) -> Self:
        """Derived client whose jobs have this priority (lower runs first)."""
        return self.with_options(Options(priority=priority))

    def type(self, job_type: str) -> Self:
        """Derived client whose jobs carry this handler name."""
        return self.with_options(Options(type=job_type))

    def max_attempts(self, attempts: int) -> Self:
        """Derived client whose jobs fail for good after this many errors."""
        return self.with_options(Options(max_attempts=attempts))

    def result_ttl(self, seconds: float) -> Self:
        """Derived client whose done jobs are kept ``seconds`` for ``wait``."""
        return self.with_options(Options(result_ttl=seconds))

    def unique(
        self,
        key: str,
        *,
        unique_for: float | None = None,
        states: Iterable[str] | None = None,
    ) -> Self:
        """Derived client whose adds create nothing while a job of the queue holds ``key``
        (see :class:`~disquette.job.Options`: ``unique_key``, ``unique_for`` and
        ``unique_states``); :meth:`add_result` tells whether a job was created."""
        return self._derived(self._options.with_unique(key, unique_for, states))

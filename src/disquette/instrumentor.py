"""The ``opentelemetry_instrumentor`` entry point, so that ``opentelemetry-instrument``
traces disquette as it does other libraries (needs ``opentelemetry-instrumentation``;
:func:`disquette.tracing.instrument` needs only ``opentelemetry-api``)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from . import tracing


class DisquetteInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Turns :mod:`disquette.tracing` on and off for OpenTelemetry's auto-instrumentation."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """Nothing beyond disquette itself."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        tracing.instrument(kwargs.get("tracer_provider"))

    def _uninstrument(self, **kwargs: Any) -> None:
        tracing.uninstrument()

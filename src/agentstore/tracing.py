"""Optional OpenTelemetry traces: a span per RPC and one per SQL statement.

Off unless `--trace-exporter` names one (`otlp` or `console`), or an embedding program hands
the server its own tracer provider. When off, OpenTelemetry is not imported and nothing is
wrapped. When on, each call's span continues the caller's trace (W3C `traceparent` in the
request metadata), and each statement's span, named after its query in queries/*.sql, is a
child of the call that ran it. The OTLP exporter reads the standard variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, ...); it needs `pip install agentstore[otel]`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from agentstore.store.queries import query_name_of
from agentstore.v1 import session_service_pb2

__all__ = ["Tracing", "make_tracing"]

SERVICE = session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name


class Tracing:
    """Spans of one server, from `provider` (an OpenTelemetry TracerProvider)."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import propagate, trace
        from psycopg import AsyncCursor

        self._trace = trace
        self._propagate = propagate
        tracer = provider.get_tracer("agentstore")
        self._tracer = tracer

        class TracedCursor(AsyncCursor[Any]):
            """A cursor whose statements run for a call are each a span under the call's.
            Background work (health pings, the live fan-out's reads, the reaper) is not
            traced: a span a second of it would bury the calls."""

            async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                if not trace.get_current_span().get_span_context().is_valid:
                    return await super().execute(query, params, **kwargs)
                name = query_name_of(query) if isinstance(query, str) else "statement"
                with tracer.start_as_current_span(
                    name,
                    kind=trace.SpanKind.CLIENT,
                    attributes={"db.system": "postgresql", "db.operation.name": name},
                ):
                    return await super().execute(query, params, **kwargs)

        self.cursor_class = TracedCursor

    @contextlib.contextmanager
    def call(self, method: str, metadata: Any) -> Iterator[Any]:
        """The span of one call, continuing the trace the caller's metadata names."""
        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        parent = self._propagate.extract(carrier)
        with self._tracer.start_as_current_span(
            f"{SERVICE}/{method}",
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method},
        ) as span:
            yield span

    @staticmethod
    def end_call(span: Any, code: str) -> None:
        """Record the call's status code on its span."""
        span.set_attribute("rpc.grpc.status_code", code)


def make_tracing(exporter: str, provider: Any = None) -> Tracing | None:
    """Tracing for `--trace-exporter` (`none`, `otlp`, `console`), or with the given provider.
    Raises ImportError when OpenTelemetry (or its OTLP exporter) is not installed."""
    if provider is not None:
        return Tracing(provider)
    if exporter == "none":
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    made = TracerProvider(resource=Resource.create({"service.name": "agentstore"}))
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        made.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return Tracing(made)

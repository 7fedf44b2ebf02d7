"""Prometheus metrics in text format at `/metrics` (`--metrics-listen HOST:PORT`): the
standard gRPC server families (as go-grpc-prometheus names them) and agentstore's own. Label
sets are bounded: methods, codes and types, never session ids. Nothing here runs unless the
server listens for metrics, except the counting itself, a few dictionary updates per call."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

__all__ = ["METRICS", "Metrics", "serve_metrics"]

log = logging.getLogger(__name__)

# Seconds; the buckets of go-grpc-prometheus' handling-time histogram.
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """Counters, gauges and histograms by name and label set, rendered as Prometheus text."""

    def __init__(self) -> None:
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._histograms: dict[str, dict[Labels, list[float]]] = defaultdict(dict)
        # Gauges are read when scraped, from whoever owns the value.
        self._gauges: dict[str, Callable[[], float]] = {}

    def describe(self, name: str, kind: str, text: str) -> None:
        self._help[name] = (kind, text)

    def count(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        self._counters[name][labels] += amount

    def observe(self, name: str, labels: Labels, seconds: float) -> None:
        counts = self._histograms[name].setdefault(labels, [0.0] * (len(HANDLING_BUCKETS) + 2))
        for index, bound in enumerate(HANDLING_BUCKETS):
            if seconds <= bound:
                counts[index] += 1
        counts[-2] += 1  # count (and +Inf)
        counts[-1] += seconds  # sum

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self._gauges[name] = read

    def render(self) -> str:
        lines: list[str] = []
        names = sorted({*self._counters, *self._histograms, *self._gauges})
        for name in names:
            kind, text = self._help.get(name, ("untyped", ""))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(self._counters.get(name, {}).items()):
                lines.append(f"{name}{_labels(labels)} {value:g}")
            for labels, counts in sorted(self._histograms.get(name, {}).items()):
                for index, bound in enumerate(HANDLING_BUCKETS):
                    bucket = (*labels, ("le", f"{bound:g}"))
                    lines.append(f"{name}_bucket{_labels(bucket)} {counts[index]:g}")
                lines.append(f"{name}_bucket{_labels((*labels, ('le', '+Inf')))} {counts[-2]:g}")
                lines.append(f"{name}_count{_labels(labels)} {counts[-2]:g}")
                lines.append(f"{name}_sum{_labels(labels)} {counts[-1]:g}")
            if name in self._gauges:
                try:
                    lines.append(f"{name} {self._gauges[name]():g}")
                except Exception:  # a gauge whose owner is gone reads as absent
                    lines.pop()
                    lines.pop()
                    lines.pop()
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# The process's metrics: one server per process.
METRICS = Metrics()
for _name, _kind, _text in (
    ("grpc_server_started_total", "counter", "RPCs started on the server."),
    ("grpc_server_handled_total", "counter", "RPCs completed on the server, by code."),
    ("grpc_server_msg_received_total", "counter", "RPC stream messages received."),
    ("grpc_server_msg_sent_total", "counter", "RPC stream messages sent."),
    ("grpc_server_handling_seconds", "histogram", "Time to handle an RPC to its end."),
    ("agentstore_events_appended_total", "counter", "Events stored by appends (not duplicates)."),
    ("agentstore_followers_open", "gauge", "StreamEvents calls open on this replica."),
    ("agentstore_pool_size", "gauge", "Database connections of the pool."),
    ("agentstore_pool_idle", "gauge", "Pool connections idle."),
    ("agentstore_pool_waiting", "gauge", "Calls waiting for a pool connection."),
    ("agentstore_database_uses_total", "gauge", "Uses of the database by this replica."),
    ("agentstore_append_commits_total", "counter", "Append transactions (a batch of messages)."),
    ("agentstore_append_commit_seconds", "histogram", "Time of one append transaction."),
    ("agentstore_live_deliveries_total", "counter", "Batches of new events handed to followers."),
    (
        "agentstore_follower_fallbacks_total",
        "counter",
        "Followers that fell behind and read the table.",
    ),
    ("agentstore_listener_connects_total", "counter", "(Re)connections of the LISTEN connection."),
    (
        "agentstore_rings_sent_total",
        "counter",
        "NOTIFY statements sent for other replicas (none while no other replica listens).",
    ),
    (
        "agentstore_other_replicas_listening",
        "gauge",
        "1 while another replica listens on this database (appends then ring it), else 0.",
    ),
    ("agentstore_reaper_purged_total", "counter", "Sessions purged by the reaper."),
    (
        "agentstore_replay_events_from_memory_total",
        "counter",
        "Events replays sent from this replica's kept replays (--replay-cache).",
    ),
    ("agentstore_replay_cache_bytes", "gauge", "Memory held by kept replays (--replay-cache)."),
):
    METRICS.describe(_name, _kind, _text)


async def serve_metrics(host: str, port: int, metrics: Metrics = METRICS) -> asyncio.Server:
    """A minimal HTTP server: GET /metrics gives the text format, anything else 404."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/metrics":
                body = metrics.render().encode()
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
            else:
                body = b"not found\n"
                head = (
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)

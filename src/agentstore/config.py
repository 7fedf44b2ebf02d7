"""Settings: one obvious way to configure. Each setting comes from its CLI flag, else its
`AGENTSTORE_*` environment variable, else its default, and is validated at start-up."""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from agentstore.domain.limits import (
    DEFAULT_LIMITS,
    Count,
    DocumentBytes,
    EventBytes,
    IdLength,
    Limits,
)

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "default_data_dir",
    "env_name",
    "flag_name",
    "parse_duration",
]

ENV_PREFIX = "AGENTSTORE_"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE = re.compile(r"(\d+)(B|KiB|MiB|GiB)?")
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, None: 1}


def parse_duration(text: str) -> timedelta:
    """A duration such as 500ms, 30s, 5m, 2h or 7d; raises ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError("must be a duration such as 500ms, 30s, 5m, 2h or 7d")
    return timedelta(seconds=float(match[1]) * _DURATION_UNITS[match[2]])


def _parse_duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


def _parse_size(value: Any) -> Any:
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError("must be a size such as 1048576, 512KiB or 1MiB")
        return int(match[1]) * _SIZE_UNITS[match[2]]
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
SizeText = BeforeValidator(_parse_size)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentstore"


class Settings(BaseModel):
    """Everything the server can be told. Field descriptions are the `--help` text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: str = Field(
        default="127.0.0.1:50051", description="HOST:PORT to serve gRPC on (port 0 picks one)"
    )
    metrics_listen: str | None = Field(
        default=None,
        description="HOST:PORT to serve Prometheus metrics at /metrics on (off when unset)",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; when unset, an embedded PostgreSQL runs in the data dir",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="directory of the embedded PostgreSQL (used without a database URL)",
    )
    pool_min_size: int = Field(default=2, ge=1, description="connections kept open")
    pool_max_size: int = Field(default=20, ge=1, description="most connections at once")
    database_timeout: Duration = Field(
        default=timedelta(seconds=30), description="how long start-up waits for the database"
    )
    database_call_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="the longest a call may wait for the database (a connection and its"
        " statements) before it fails UNAVAILABLE; also each statement's statement_timeout",
    )
    health_check_interval: Duration = Field(
        default=timedelta(seconds=1),
        description="how often health pings the database (NOT_SERVING while it fails or does"
        " not answer within the interval, at least a second)",
    )
    shutdown_grace: Duration = Field(
        default=timedelta(seconds=10),
        description="on SIGTERM/SIGINT, how long in-flight calls may take to finish",
    )
    reaper_interval: Duration = Field(
        default=timedelta(seconds=60), description="how often expired sessions are purged"
    )
    expired_grace: Duration = Field(
        default=timedelta(hours=1),
        description="how long after expiring a session is purged (undelete works until then)",
    )
    deleted_retention: Duration | None = Field(
        default=None,
        description="purge soft-deleted sessions this long after deletion (unset: keep them)",
    )
    max_id_length: IdLength = Field(
        default=DEFAULT_LIMITS.max_id_length, description="longest id or name"
    )
    max_metadata_bytes: Annotated[DocumentBytes, SizeText] = Field(
        default=DEFAULT_LIMITS.max_metadata_bytes,
        description="largest session metadata (as JSON text, see Session.state in the proto)",
    )
    max_state_bytes: Annotated[DocumentBytes, SizeText] = Field(
        default=DEFAULT_LIMITS.max_state_bytes,
        description="largest session state (as JSON text, see Session.state in the proto)",
    )
    max_event_bytes: Annotated[EventBytes, SizeText] = Field(
        default=DEFAULT_LIMITS.max_event_bytes,
        description="largest event (encoded) in an append; at most 3MiB",
    )
    max_events_per_message: Count = Field(
        default=DEFAULT_LIMITS.max_events_per_message,
        description="most events in one AppendEvents request message",
    )
    max_message_bytes: Annotated[DocumentBytes, SizeText] = Field(
        default=DEFAULT_LIMITS.max_message_bytes,
        description="largest AppendEvents request message (encoded)",
    )
    max_streams: int = Field(
        default=10_000, ge=1, description="most StreamEvents calls open at once on this server"
    )
    heartbeat_interval: Duration = Field(
        default=timedelta(seconds=15),
        description="an idle StreamEvents stream gets a heartbeat message this often",
    )
    live_poll_interval: Duration = Field(
        default=timedelta(seconds=1),
        description="how often each replica looks for sessions changed without a"
        " notification (one query, whatever the number of followers)",
    )
    follower_buffer: int = Field(
        default=64, ge=1, description="batches a follower may have unread before it falls back"
    )
    replay_cache: Annotated[int, SizeText] = Field(
        default=64 * 1024**2,
        ge=0,
        description="memory for the encoded events of recently replayed (or paged) sessions,"
        " sent from memory when the session is replayed or paged again (0: off)",
    )
    search_candidates: int = Field(
        default=2000, ge=1, description="Search ranks this many of the newest matches"
    )
    tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain to serve TLS with (with --tls-key); reloaded when "
        "the file changes",
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of --tls-cert")
    tls_client_ca: Path | None = Field(
        default=None,
        description="PEM CA certificates: clients must present a certificate they signed (mTLS)",
    )
    auth: Literal["none", "api-key"] = Field(
        default="none",
        description="none, or api-key: every call needs authorization: Bearer <key> "
        "(agentstore keys create)",
    )
    key_max_streams: int = Field(
        default=1000, ge=1, description="most StreamEvents calls one API key may have open"
    )
    key_append_rate: float = Field(
        default=5000.0, gt=0, description="events a second one API key may append, on average"
    )
    key_append_burst: int = Field(
        default=10_000, ge=1, description="events one API key may append at once above its rate"
    )
    insecure: bool = Field(
        default=False,
        description="serve a non-loopback address without authentication anyway (refused "
        "otherwise)",
    )
    log_level: str = Field(
        default="INFO",
        description="DEBUG (also a line per call: method, code, duration), INFO, WARNING or ERROR",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="text (key=value) or json (one object per line)"
    )
    trace_exporter: Literal["none", "otlp", "console"] = Field(
        default="none",
        description="OpenTelemetry spans per call and per statement: none, otlp (to"
        " OTEL_EXPORTER_OTLP_ENDPOINT; needs agentstore[otel]) or console",
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("must be HOST:PORT, for example 127.0.0.1:50051 or [::]:50051")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        try:
            conninfo_to_dict(value)
        except psycopg.ProgrammingError as exc:
            raise ValueError(
                "must be a PostgreSQL URL (postgresql://user@host:port/db) or a key=value "
                f"connection string: {exc}"
            ) from None
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key: mTLS is TLS first")
        return self

    @model_validator(mode="after")
    def _check_pool(self) -> Settings:
        if self.pool_max_size < self.pool_min_size:
            raise ValueError("pool_max_size must be at least pool_min_size")
        return self

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @field_validator(
        "database_timeout",
        "database_call_timeout",
        "health_check_interval",
        "reaper_interval",
        "expired_grace",
        "heartbeat_interval",
        "live_poll_interval",
    )
    @classmethod
    def _check_positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @property
    def listens_on_loopback(self) -> bool:
        """Whether `listen` reaches only this machine (127.0.0.0/8, ::1, localhost)."""
        host = self.listen.rpartition(":")[0].strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    @property
    def limits(self) -> Limits:
        return Limits(
            max_id_length=self.max_id_length,
            max_metadata_bytes=self.max_metadata_bytes,
            max_state_bytes=self.max_state_bytes,
            max_event_bytes=self.max_event_bytes,
            max_events_per_message=self.max_events_per_message,
            max_message_bytes=self.max_message_bytes,
        )


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()

"""Channels to one or more agentstore servers: targets, TLS, the API key, and backoff."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from agentstore.v1.session_service_pb2_grpc import SessionServiceStub

__all__ = ["TLS", "Connection", "backoff_seconds"]


@dataclass(frozen=True, slots=True)
class TLS:
    """TLS for the channel. Without `ca_file` the system's roots verify the server; with
    `cert_file` and `key_file` the client presents its certificate (mutual TLS);
    `server_name` overrides the name checked in the server's certificate."""

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TLS needs both cert_file and key_file for a client certificate")
        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )


def backoff_seconds(attempt: int, *, first: float = 0.05, most: float = 2.0) -> float:
    """How long to wait before retry number `attempt` (0-based): exponential, with jitter so
    that many clients do not come back at the same instant."""
    return float(random.uniform(0.5, 1.0) * min(most, first * 2**attempt))


class Connection:
    """The channel to the current target; `rotate()` moves to the next of several targets
    (after the current one failed). Channels are made lazily, in the running event loop."""

    def __init__(
        self, targets: str | Sequence[str], *, api_key: str | None, tls: TLS | bool | None
    ) -> None:
        self.targets = [targets] if isinstance(targets, str) else list(targets)
        if not self.targets:
            raise ValueError("at least one target is needed")
        self._index = 0
        self._tls = TLS() if tls is True else (tls or None)
        self._channel: grpc.aio.Channel | None = None
        self._stub: SessionServiceStub | None = None
        # Channels left by rotate(): calls may still run on them; closed with the client.
        self._closing: list[grpc.aio.Channel] = []
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )

    @property
    def target(self) -> str:
        return self.targets[self._index]

    def stub(self) -> SessionServiceStub:
        if self._stub is None:
            self._channel = self._open(self.target)
            self._stub = SessionServiceStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    def rotate(self) -> None:
        """Use the next target from the next call on (the same one when there is only one:
        its channel reconnects by itself)."""
        if len(self.targets) == 1:
            return
        self._index = (self._index + 1) % len(self.targets)
        old, self._channel, self._stub = self._channel, None, None
        if old is not None:
            self._closing.append(old)

    async def close(self) -> None:
        channels, self._closing = [*self._closing, self._channel], []
        self._channel = self._stub = None
        for channel in channels:
            if channel is not None:
                await channel.close()

    def _open(self, target: str) -> grpc.aio.Channel:
        if self._tls is None:
            return grpc.aio.insecure_channel(target)
        options = []
        if self._tls.server_name:
            options.append(("grpc.ssl_target_name_override", self._tls.server_name))
        return grpc.aio.secure_channel(target, self._tls.credentials(), options=options)

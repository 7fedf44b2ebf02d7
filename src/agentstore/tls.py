"""TLS for the gRPC server: certificates read from files, and read again when they change.

grpc asks the fetcher for a configuration at every new TLS handshake; it answers with the
files' current contents when their modification times changed since the last answer, and
None (keep the current one) otherwise. So a renewed certificate (for example by cert-manager
or certbot) applies to new connections without a restart; connections already open keep the
certificate they were made with."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc

__all__ = ["CertificateFiles", "server_credentials"]

log = logging.getLogger(__name__)


class CertificateFiles:
    """The server's certificate chain, its key and the CA that client certificates need."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self._paths = [path for path in (cert, key, client_ca) if path is not None]
        self._cert, self._key, self._client_ca = cert, key, client_ca
        self._lock = threading.Lock()  # grpc calls the fetcher from its own threads
        self._seen = self._mtimes()

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        """The files' contents as grpc takes them. Raises OSError when one cannot be read."""
        client_ca = self._client_ca.read_bytes() if self._client_ca is not None else None
        return grpc.ssl_server_certificate_configuration(
            [(self._key.read_bytes(), self._cert.read_bytes())], root_certificates=client_ca
        )

    def changed_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed since the last one, else None."""
        with self._lock:
            try:
                now = self._mtimes()
                if now == self._seen:
                    return None
                configuration = self.configuration()
            except (OSError, ValueError) as exc:
                # Half-written or missing files: keep serving the certificate we have.
                log.warning("cannot reload the TLS certificate", extra={"error": str(exc)})
                return None
            self._seen = now
            log.info("TLS certificate reloaded", extra={"cert": str(self._cert)})
            return configuration

    def _mtimes(self) -> list[tuple[int, int, int]]:
        # The inode too: a certificate manager replaces files by renaming new ones over them,
        # which a coarse modification time may not show.
        stats = [path.stat() for path in self._paths]
        return [(stat.st_mtime_ns, stat.st_ino, stat.st_size) for stat in stats]


def server_credentials(
    files: CertificateFiles, *, require_client_cert: bool
) -> grpc.ServerCredentials:
    """Credentials that serve `files`, reloaded when they change."""
    return grpc.dynamic_ssl_server_credentials(
        files.configuration(),
        # grpc takes None from the fetcher as "no change"; its stubs do not say so.
        files.changed_configuration,  # type: ignore[arg-type]
        require_client_authentication=require_client_cert,
    )

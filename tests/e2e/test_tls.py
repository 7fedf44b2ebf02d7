"""TLS and mTLS with certificates made here: who can connect, and a renewed certificate taking
effect without a restart."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agentstore.app import AgentStoreServer
from agentstore.v1 import session_service_pb2 as pb
from agentstore.v1.session_service_pb2_grpc import SessionServiceStub
from tests.conftest import server_settings


@dataclass
class Issued:
    cert: bytes
    key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(common_name: str) -> tuple[Issued, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)), key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common_name: str, *, server: bool
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


@dataclass
class Pki:
    directory: Path
    ca: Issued
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    def write_server(self, issued: Issued) -> tuple[Path, Path]:
        cert, key = self.directory / "server.pem", self.directory / "server.key"
        # Write aside and rename, as a certificate manager does, so no read sees half a file.
        for path, content in ((cert, issued.cert), (key, issued.key)):
            partial = path.with_suffix(".tmp")
            partial.write_bytes(content)
            os.replace(partial, path)
        return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, ca_key, ca_cert = make_ca("agentstore test CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert)
    return Pki(tmp_path, ca, ca_key, ca_cert)


@pytest.fixture
async def tls_server(database_url: str, pki: Pki) -> AsyncIterator[AgentStoreServer]:
    cert, key = pki.write_server(issue(pki.ca_key, pki.ca_cert, "localhost", server=True))
    running = AgentStoreServer(server_settings(database_url, tls_cert=cert, tls_key=key))
    await running.start()
    yield running
    await running.stop()


async def call_over(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await SessionServiceStub(channel).GetStoreStats(pb.GetStoreStatsRequest(), timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def secure(port: int, root: bytes, client: Issued | None = None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return grpc.aio.secure_channel(f"localhost:{port}", credentials)


async def test_tls_serves_clients_that_trust_its_ca_and_refuses_plaintext(
    tls_server: AgentStoreServer, pki: Pki
) -> None:
    async with secure(tls_server.port, pki.ca.cert) as channel:
        assert await call_over(channel) == grpc.StatusCode.OK
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_server.port}") as plaintext:
        assert await call_over(plaintext) == grpc.StatusCode.UNAVAILABLE
    other_ca, _, _ = make_ca("someone else")
    async with secure(tls_server.port, other_ca.cert) as untrusting:
        assert await call_over(untrusting) == grpc.StatusCode.UNAVAILABLE


async def test_a_renewed_certificate_serves_new_connections_without_a_restart(
    tls_server: AgentStoreServer, pki: Pki
) -> None:
    new_ca, new_ca_key, new_ca_cert = make_ca("the renewed CA")
    pki.write_server(issue(new_ca_key, new_ca_cert, "localhost", server=True))
    async with secure(tls_server.port, new_ca.cert) as channel:
        assert await call_over(channel) == grpc.StatusCode.OK
    async with secure(tls_server.port, pki.ca.cert) as old_trust:
        assert await call_over(old_trust) == grpc.StatusCode.UNAVAILABLE


async def test_mtls_requires_a_client_certificate_its_ca_signed(
    database_url: str, pki: Pki
) -> None:
    cert, key = pki.write_server(issue(pki.ca_key, pki.ca_cert, "localhost", server=True))
    client_ca, client_ca_key, client_ca_cert = make_ca("client CA")
    (pki.directory / "clients.pem").write_bytes(client_ca.cert)
    settings = server_settings(
        database_url, tls_cert=cert, tls_key=key, tls_client_ca=pki.directory / "clients.pem"
    )
    running = AgentStoreServer(settings)
    await running.start()
    try:
        client = issue(client_ca_key, client_ca_cert, "agent-7", server=False)
        async with secure(running.port, pki.ca.cert, client) as channel:
            assert await call_over(channel) == grpc.StatusCode.OK
        async with secure(running.port, pki.ca.cert) as without_cert:
            assert await call_over(without_cert) == grpc.StatusCode.UNAVAILABLE
        stranger_ca, stranger_key, stranger_cert = make_ca("not the client CA")
        del stranger_ca
        stranger = issue(stranger_key, stranger_cert, "intruder", server=False)
        async with secure(running.port, pki.ca.cert, stranger) as channel:
            assert await call_over(channel) == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.stop()


async def test_tls_lets_a_server_listen_beyond_loopback_without_keys(
    database_url: str, pki: Pki
) -> None:
    cert, key = pki.write_server(issue(pki.ca_key, pki.ca_cert, "localhost", server=True))
    running = AgentStoreServer(
        server_settings(database_url, listen="0.0.0.0:0", tls_cert=cert, tls_key=key)
    )
    await running.start()
    try:
        async with secure(running.port, pki.ca.cert) as channel:
            assert await call_over(channel) == grpc.StatusCode.OK
    finally:
        await running.stop()


def test_half_a_tls_configuration_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="give both or neither"):
        server_settings("postgresql://x/y", tls_cert=pki.directory / "ca.pem")

"""Fixtures shared by every test directory: store URLs for each backend, isolated per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kronika.testing.services import postgres_server_url, require_service


@pytest.fixture
def memory_url() -> str:
    """A fresh named in-memory store, shared by every store opened on the URL."""
    return f"memory://test-{uuid.uuid4().hex}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'kronika.db'}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server URL; skips (or fails under KRONIKA_REQUIRE_SERVICES=1) if down."""
    try:
        import psycopg
    except ImportError:
        require_service("PostgreSQL", "psycopg is not installed (pip install 'kronika[postgres]')")
    url = postgres_server_url()
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        require_service("PostgreSQL", f"cannot connect to {url}: {exc}")
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A store URL on the test server with a schema of its own, dropped after the test."""
    import psycopg

    schema = f"kronika_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}schema={schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


MakeCertificate = Callable[..., tuple[Path, Path]]


@pytest.fixture
def make_certificate(tmp_path: Path) -> MakeCertificate:
    """``make_certificate(days_left=90, days_valid=365)``: a self-signed certificate for
    ``localhost`` / 127.0.0.1 and its key, as PEM files (it is its own CA)."""
    from datetime import UTC, datetime, timedelta
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def make(days_left: float = 90, days_valid: float = 365) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        end = datetime.now(UTC) + timedelta(days=days_left)
        names = [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(end - timedelta(days=days_valid))
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        stem = tmp_path / f"cert-{uuid.uuid4().hex[:8]}"
        cert_file, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_file, key_file

    return make

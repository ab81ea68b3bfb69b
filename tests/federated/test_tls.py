"""TLS and the shared token end to end: clients reach a TLS server with the CA certificate
and sign their results with the token from the environment; the server aggregates them."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from synthtune.config import load_recipe
from synthtune.federated.simulation import simulate
from tests.federated.conftest import write_federated_recipe


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def write_certificates(folder: Path) -> list[Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost it signed."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    import ipaddress

    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = [folder / "ca.pem", folder / "server.pem", folder / "server.key"]
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.mark.slow
def test_tls_and_token(tmp_path: Path, tiny_model_dir: Path, monkeypatch) -> None:
    certificates = write_certificates(tmp_path)
    monkeypatch.setenv("FED_TEST_TOKEN", "s3cret")
    path = write_federated_recipe(
        tmp_path,
        tiny_model_dir,
        overrides={
            "federated": {
                "rounds": 1,
                "clients": ["data/hospital-a.jsonl", "data/hospital-b.jsonl"],
                "token_env": "FED_TEST_TOKEN",
                "tls_certificates": [str(p) for p in certificates],
            }
        },
    )
    summary = simulate(load_recipe(path), tmp_path / "runs", log=lambda m: None)
    (row,) = summary["rounds"]
    assert (row["clients_ok"], row["clients_rejected"], row["aggregated"]) == (2, 0, True)

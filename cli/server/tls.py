"""The API's TLS certificate: the administrator's own, or one generated at first start.

Like the appliance, the service speaks HTTPS from its first start: it generates a self-signed
certificate (ECDSA P-256, valid for the host name, localhost, 127.0.0.1 and ::1) with its key
(mode 0600) in `<data>/tls/`, and prints the certificate's SHA-256 fingerprint, the way ssh
shows a host key, so that a client can check what it connects to.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common.config import Settings
from common.privatefiles import replace as private_replace

VALID_DAYS = 3 * 365
# A generated certificate this close to its end is replaced at start.
RENEW_DAYS = 30


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    generated: bool


def tls_files(settings: Settings) -> TlsFiles:
    """The administrator's certificate and key, or the generated pair (made when missing)."""
    if settings.tls_cert_file and settings.tls_key_file:
        return TlsFiles(settings.tls_cert_file, settings.tls_key_file, generated=False)
    folder = settings.data_dir / "tls"
    files = TlsFiles(folder / "cert.pem", folder / "key.pem", generated=True)
    if not files.cert.exists() or _expires_soon(files.cert):
        write_self_signed(files, _names(settings.host))
    return files


def _names(host: str) -> list[str]:
    names = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    if host not in ("", "0.0.0.0", "::", *names):
        names.append(host)
    return names


def _expires_soon(cert_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left < datetime.timedelta(days=RENEW_DAYS)


def _subject_alt_names(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def self_signed_certificate(names: list[str]) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a new self-signed server certificate for `names`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "h4backup")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(_subject_alt_names(names), critical=False)
            # Its own trust anchor: clients give it as their CA file (curl --cacert), and
            # strict verifiers want a CA's key usage and key identifiers on it.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_self_signed(files: TlsFiles, names: list[str]) -> None:
    cert_pem, key_pem = self_signed_certificate(names)
    files.key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_replace(files.key, key_pem)
    private_replace(files.cert, cert_pem, mode=0o644)


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the certificate, as `openssl x509 -fingerprint -sha256` prints it."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2 and newer, the certificate chain loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=files.cert, keyfile=files.key)
    return context

"""An SMTP relay for the tests, on this machine (the hosts reach it at the podman gateway):
STARTTLS with a certificate from a throwaway CA, AUTH required after TLS, messages kept."""

import datetime
import ipaddress
import ssl
import tempfile
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _certificate(subject, key, issuer, issuer_key, ca, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    # What a strict verifier (Python 3.13's default context: X509_STRICT) asks of a chain.
    builder = (builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                            encipher_only=False, decipher_only=False), critical=True))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                                        critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(san))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Sink:
    """Accepts mail from a client that logs in as `user` with `password`."""

    def __init__(self, address, port, user, password):
        self.messages, self.logins = [], []
        self._dir = Path(tempfile.mkdtemp(prefix="berth-smtp-"))
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("berth test mail CA", ca_key, "berth test mail CA", ca_key, True)
        cert = _certificate(address, key, "berth test mail CA", ca_key, False, san=address)
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
        (self._dir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self._dir / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._dir / "cert.pem", self._dir / "key.pem")

        def authenticate(server, session, envelope, mechanism, auth_data):
            del server, session, envelope, mechanism
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            self.logins.append(ok)
            return AuthResult(success=ok)

        self._controller = Controller(self, hostname=address, port=port, tls_context=context,
                                      require_starttls=True, authenticator=authenticate,
                                      auth_require_tls=True, auth_required=True)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        del server, session
        self.messages.append(envelope)
        return "250 OK"

    def __enter__(self):
        self._controller.start()
        return self

    def __exit__(self, *exc):
        self._controller.stop()

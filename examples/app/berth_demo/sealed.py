"""Values encrypted at rest with ENCRYPTION_KEY, and how they survive its rotation.

berth's contract for an encryption key (roles/secrets/README.md): after a rotation the old key is
ENCRYPTION_KEY_PREVIOUS, and it stays until the operator retires it. So the app decrypts with
either, encrypts with the current one only, and re-encrypts what the previous one sealed
(Database.reseal, at start-up): once that has run, retiring the previous key loses nothing.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def fernet(secret: str) -> Fernet:
    # Fernet takes 32 bytes (signing + encryption keys): derived from the secret, whatever its form.
    digest = hashlib.sha256(b"berth_demo sealed v1\0" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class Sealer:
    def __init__(self, key: str, previous: str | None = None):
        self.current = fernet(key)
        self.previous = fernet(previous) if previous else None
        self.both = MultiFernet([self.current] + ([self.previous] if self.previous else []))

    def seal(self, value: str) -> str:
        return self.current.encrypt(value.encode()).decode()

    def open(self, token: str) -> tuple[str, str]:
        """(the value, which key opened it: current or previous); InvalidToken if neither."""
        try:
            return self.current.decrypt(token.encode()).decode(), "current"
        except InvalidToken:
            if self.previous is None:
                raise
            return self.previous.decrypt(token.encode()).decode(), "previous"

    def needs_reseal(self, token: str) -> bool:
        try:
            self.current.decrypt(token.encode())
            return False
        except InvalidToken:
            return True

    def reseal(self, token: str) -> str:
        """The value sealed anew with the current key (InvalidToken if no key opens it)."""
        return self.both.rotate(token.encode()).decode()

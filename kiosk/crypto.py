"""Visitor data at rest: AES-GCM per field, bound to its row and column, with a rotatable keyring.

A sealed value is `0x01 | key id (4 bytes) | nonce (12) | ciphertext+tag`. The associated data is
`table.column:row-id`, so a ciphertext copied into another row or column does not open. Names are
looked up through a keyed hash (a blind index) of their normalized form, never in the clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = 1
KEY_ID_BYTES = 4
NONCE_BYTES = 12


class KeyFileError(Exception):
    """The keyring file is missing, unreadable, malformed, or readable by others."""


class DecryptError(Exception):
    """A sealed value does not open: wrong key, wrong row or column, or tampered bytes."""


def _ad(table: str, column: str, row_id: str) -> bytes:
    return f"{table}.{column}:{row_id}".encode()


@dataclass(frozen=True)
class Keyring:
    """Every key that may still be needed to open data, and the one new data is sealed with."""

    current: str  # key id (hex)
    keys: dict[str, bytes]

    @classmethod
    def generate(cls) -> Keyring:
        """A new keyring with one fresh 256-bit key."""
        kid = secrets.token_hex(KEY_ID_BYTES)
        return cls(current=kid, keys={kid: AESGCM.generate_key(bit_length=256)})

    def with_new_key(self) -> Keyring:
        """This keyring plus a fresh key that becomes current (old keys stay until re-encryption is done)."""
        kid = secrets.token_hex(KEY_ID_BYTES)
        while kid in self.keys:
            kid = secrets.token_hex(KEY_ID_BYTES)
        return Keyring(current=kid, keys={**self.keys, kid: AESGCM.generate_key(bit_length=256)})

    def only_current(self) -> Keyring:
        """Just the current key."""
        return Keyring(current=self.current, keys={self.current: self.keys[self.current]})

    def to_json(self) -> str:
        """The file form."""
        return json.dumps({"format": FORMAT, "current": self.current,
                           "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()}}, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str) -> Keyring:
        """Parse the file form; errors say what is wrong and where."""
        try:
            data = json.loads(text)
            current = data["current"]
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in data["keys"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise KeyFileError(f"{where}: not a SiteWarden kiosk keyring ({type(err).__name__}: {err})") from err
        if current not in keys:
            raise KeyFileError(f"{where}: current key {current!r} is not among its keys")
        for kid, key in keys.items():
            if len(key) != 32 or len(bytes.fromhex(kid)) != KEY_ID_BYTES:
                raise KeyFileError(f"{where}: key {kid!r} is not a 4-byte id with a 256-bit key")
        return cls(current=current, keys=keys)


def load_keyring(path: Path, create: bool = False) -> Keyring:
    """Read the keyring, refusing one that group or others can read; create it (mode 0600) when asked."""
    if not path.exists():
        if not create:
            raise KeyFileError(f"kiosk key file {path} does not exist")
        ring = Keyring.generate()
        write_keyring(path, ring)
        return ring
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(f"kiosk key file {path} is readable or writable by group/others (mode {mode:04o}); "
                           f"run: chmod 600 {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise KeyFileError(f"kiosk key file {path}: {err.strerror}") from err
    return Keyring.from_json(text, str(path))


def write_keyring(path: Path, ring: Keyring) -> None:
    """Write atomically with mode 0600: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, ring.to_json().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FieldCipher:
    """Seals and opens single fields, and makes the blind index of names."""

    def __init__(self, ring: Keyring) -> None:
        self.ring = ring
        self._aead = {kid: AESGCM(key) for kid, key in ring.keys.items()}
        self._index_key = hmac.new(ring.keys[ring.current], b"sitewarden-kiosk-blind-index", hashlib.sha256).digest()

    def seal(self, table: str, column: str, row_id: str, value: str | bytes | None) -> bytes | None:
        """Encrypt one value for exactly this row and column (None stays None)."""
        if value is None:
            return None
        data = value.encode() if isinstance(value, str) else value
        nonce = os.urandom(NONCE_BYTES)
        kid = self.ring.current
        sealed = self._aead[kid].encrypt(nonce, data, _ad(table, column, row_id))
        return bytes([FORMAT]) + bytes.fromhex(kid) + nonce + sealed

    def open_bytes(self, table: str, column: str, row_id: str, blob: bytes | None) -> bytes | None:
        """Decrypt one value; DecryptError when it was not sealed for this row and column with a known key."""
        if blob is None:
            return None
        if len(blob) < 1 + KEY_ID_BYTES + NONCE_BYTES + 16 or blob[0] != FORMAT:
            raise DecryptError(f"{table}.{column} of {row_id}: not a sealed value")
        kid = blob[1:1 + KEY_ID_BYTES].hex()
        aead = self._aead.get(kid)
        if aead is None:
            raise DecryptError(f"{table}.{column} of {row_id}: sealed with key {kid}, which the keyring lacks")
        nonce = blob[1 + KEY_ID_BYTES:1 + KEY_ID_BYTES + NONCE_BYTES]
        try:
            return aead.decrypt(nonce, blob[1 + KEY_ID_BYTES + NONCE_BYTES:], _ad(table, column, row_id))
        except InvalidTag:
            raise DecryptError(f"{table}.{column} of {row_id}: does not open (moved, altered or wrong key)") from None

    def open(self, table: str, column: str, row_id: str, blob: bytes | None) -> str | None:
        """Decrypt one text value."""
        data = self.open_bytes(table, column, row_id, blob)
        return None if data is None else data.decode()

    def key_id_of(self, blob: bytes) -> str:
        """Which key sealed a value."""
        return blob[1:1 + KEY_ID_BYTES].hex()

    def index(self, normalized: str) -> str:
        """Keyed hash of an already normalized value: equal inputs match, the value itself is not stored."""
        return hmac.new(self._index_key, normalized.encode(), hashlib.sha256).hexdigest()

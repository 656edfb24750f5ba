"""Ansible filter: a mosquitto password-file hash (`$7$`, PBKDF2-SHA512) that is the same on every run.

mosquitto_passwd picks a random salt, so a template using it would change the file on every run and
restart the broker. Here the salt comes from a per-account, per-box label, so the hash is stable while
the password is, and differs between accounts and boxes. It is never derived from the password: a salt
that was would let a stolen file be checked against guesses without paying for PBKDF2.
"""

from __future__ import annotations

import base64
import hashlib

SALT_BYTES = 12  # as mosquitto_passwd
MIN_ITERATIONS = 101  # mosquitto's own default


def sitewarden_mosquitto_hash(password: str, label: str, iterations: int = 100_000) -> str:
    """`$7$<iterations>$<salt>$<hash>` for one account of a mosquitto 2.x password file."""
    if not password:
        raise ValueError(f"empty password for {label}")
    rounds = int(iterations)
    if rounds < MIN_ITERATIONS:
        raise ValueError(f"iterations must be at least {MIN_ITERATIONS}, got {rounds}")
    secret = str(password).encode("utf-8")
    salt = hashlib.sha512(f"sitewarden-mosquitto-salt:{label}".encode()).digest()[:SALT_BYTES]
    digest = hashlib.pbkdf2_hmac("sha512", secret, salt, rounds)
    return f"$7${rounds}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class FilterModule:
    """Registers the filter with Ansible."""

    def filters(self) -> dict[str, object]:
        """Filter name -> function."""
        return {"sitewarden_mosquitto_hash": sitewarden_mosquitto_hash}

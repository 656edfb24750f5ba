"""Staff accounts: argon2 password hashes, a TOTP second factor that refuses replays, server-side sessions."""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge.events import utcnow
from kiosk.crypto import FieldCipher
from kiosk.desk import Storage
from kiosk.store import iso, parse_iso, record_audit, token_hash
from kiosk.throttle import SlidingWindow

logger = logging.getLogger(__name__)

Role = Literal["reception", "facilities", "admin"]
ROLES: tuple[Role, ...] = ("reception", "facilities", "admin")
# What each role may do on the reception console.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "view": frozenset({"reception", "facilities", "admin"}),  # on site, expected, overdue, roll call
    "manage_visits": frozenset({"reception", "admin"}),  # check out, release/refuse, pre-register, import
    "audit": frozenset({"admin"}),
}
TOTP_STEP_S = 30
PASSWORD_STAGE_MINUTES = 5
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("timing-equalizer")


@dataclass(frozen=True)
class StaffSession:
    """A logged-in (or half logged-in) staff member."""

    username: str
    role: Role
    stage: Literal["password", "full"]
    csrf: str
    must_change_password: bool = False  # after `kiosk user reset-password`: nothing else until it is changed
    expires_at: datetime | None = None  # when the session ends (what the roll-call copy's lifetime follows)

    def may(self, permission: str) -> bool:
        """Whether this role has the permission."""
        return self.stage == "full" and self.role in PERMISSIONS[permission]


class UserError(ValueError):
    """A staff account command that cannot be done (exists, unknown role, weak password)."""


class WrongPassword(UserError):
    """A password change whose current password is wrong."""


# What an API token may do. Every scope reaches only the visits the token's client pre-registered itself.
API_SCOPES: dict[str, str] = {
    "preregister": "create expected visits and read the host directory",
    "read-own": "read and list the visits this client pre-registered",
    "cancel-own": "cancel the expected visits this client pre-registered",
}


@dataclass(frozen=True)
class ApiClient:
    """The holder of an API token: its name (visits it makes are `created_by` `api:<name>`) and scopes."""

    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """How its visits and audit entries name it."""
        return f"api:{self.name}"


def check_scopes(scopes: frozenset[str]) -> str:
    """The scopes as stored (sorted, comma-separated), or UserError naming the unknown ones."""
    unknown = sorted(set(scopes) - set(API_SCOPES))
    if unknown or not scopes:
        raise UserError(f"unknown scope {', '.join(unknown) or '(none given)'}: pick from {', '.join(API_SCOPES)}")
    return ",".join(sorted(scopes))


class StaffAuth:
    """Accounts and sessions in the kiosk's database."""

    def __init__(self, producer: Storage, cipher: FieldCipher, session_hours: float,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.producer = producer
        self.db = producer.db
        self.cipher = cipher
        self.session_hours = session_hours
        self.clock = clock

    # -- accounts ---------------------------------------------------------------------------------------------
    def add_user(self, username: str, role: str, password: str) -> str:
        """Create an account; returns its new TOTP secret (shown once, to be put in an authenticator app)."""
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}: pick one of {', '.join(ROLES)}")
        if not (3 <= len(username) <= 64) or not username.replace("-", "").replace(".", "").replace("_", "").isalnum():
            raise UserError("username: 3-64 letters, digits, '.', '-' or '_'")
        if len(password) < 12:
            raise UserError("password: at least 12 characters")
        secret = pyotp.random_base32()
        with self.producer.atomic():
            if self.db.execute("SELECT 1 FROM staff_users WHERE username = ?", [username]).fetchone():
                raise UserError(f"user {username!r} exists already")
            self.db.execute("INSERT INTO staff_users (username, role, password_hash, totp_enc, created_at) "
                            "VALUES (?, ?, ?, ?, ?)",
                            [username, role, _hasher.hash(password),
                             self.cipher.seal("staff_users", "totp", username, secret), iso(self.clock())])
            record_audit(self.db, self.clock(), "admin-cli", "add_user", detail=f"{username} ({role})")
        return secret

    def _change_user(self, username: str, action: str, actor: str, note: str, sql: str, args: list[object],
                     end_sessions: bool) -> None:
        """One account change in one transaction with its audit row; UserError for an unknown account."""
        with self.producer.atomic():
            if not self.db.execute("SELECT 1 FROM staff_users WHERE username = ?", [username]).fetchone():
                raise UserError(f"no user {username!r} (see `sitewarden kiosk user list`)")
            if end_sessions:  # before the row goes: a removed or locked-out user is signed out at once
                self.db.execute("DELETE FROM staff_sessions WHERE username = ?", [username])
            self.db.execute(sql, args)
            record_audit(self.db, self.clock(), actor, action, detail=f"{username}" + (f" ({note})" if note else ""))
        logger.info("staff account %s: %s by %s", username, action, actor)

    def set_disabled(self, username: str, disabled: bool, actor: str, note: str = "") -> None:
        """Disable (its sessions end now, sign-in refused) or enable an account."""
        self._change_user(username, "disable_user" if disabled else "enable_user", actor, note,
                          "UPDATE staff_users SET disabled = ? WHERE username = ?", [int(disabled), username],
                          end_sessions=disabled)

    def remove_user(self, username: str, actor: str, note: str = "") -> None:
        """Delete an account and its sessions; the audit log keeps what it did."""
        self._change_user(username, "remove_user", actor, note, "DELETE FROM staff_users WHERE username = ?",
                          [username], end_sessions=True)

    def reset_password(self, username: str, actor: str, note: str = "", password: str | None = None) -> str:
        """A new password (a random one-time password unless given), to be changed at the next sign-in; the
        account's sessions end. Returns the password."""
        new = password if password is not None else secrets.token_urlsafe(12)
        if len(new) < 12:
            raise UserError("password: at least 12 characters")
        self._change_user(username, "reset_password", actor, note,
                          "UPDATE staff_users SET password_hash = ?, must_change_password = ? WHERE username = ?",
                          [_hasher.hash(new), int(password is None), username], end_sessions=True)
        return new

    def reset_totp(self, username: str, actor: str, note: str = "") -> str:
        """A new TOTP secret (the old authenticator stops working); the account's sessions end. Returns it."""
        secret = pyotp.random_base32()
        self._change_user(username, "reset_2fa", actor, note,
                          "UPDATE staff_users SET totp_enc = ?, last_totp_step = 0 WHERE username = ?",
                          [self.cipher.seal("staff_users", "totp", username, secret), username], end_sessions=True)
        return secret

    def users(self) -> list[tuple[str, str, bool]]:
        """(username, role, disabled) of every account."""
        with self.producer.lock:
            return [(r[0], r[1], bool(r[2])) for r in
                    self.db.execute("SELECT username, role, disabled FROM staff_users ORDER BY username")]

    # -- login --------------------------------------------------------------------------------------------------
    def check_password(self, username: str, password: str) -> str | None:
        """A password-stage session token when the password is right, else None (same work either way)."""
        with self.producer.lock:
            row = self.db.execute("SELECT password_hash, disabled FROM staff_users WHERE username = ?",
                                  [username]).fetchone()
        stored = row[0] if row else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or row[1]:
            return None
        if _hasher.check_needs_rehash(stored):
            with self.producer.atomic():
                self.db.execute("UPDATE staff_users SET password_hash = ? WHERE username = ?",
                                [_hasher.hash(password), username])
        return self._new_session(username, "password", timedelta(minutes=PASSWORD_STAGE_MINUTES))

    def check_totp(self, token: str, code: str) -> bool:
        """Second step: a current TOTP code, never one accepted before (pyotp alone would take it twice)."""
        session = self.session(token)
        if session is None or session.stage != "password" or not (code.isdigit() and len(code) == 6):
            return False
        with self.producer.atomic():
            row = self.db.execute("SELECT totp_enc, last_totp_step FROM staff_users WHERE username = ?",
                                  [session.username]).fetchone()
            secret = self.cipher.open("staff_users", "totp", session.username, row[0])
            totp = pyotp.TOTP(secret or "")
            now = self.clock().timestamp()
            step = None
            for offset in (0, -1, 1):  # this step and one either side, for clock drift
                candidate = int(now // TOTP_STEP_S) + offset
                if hmac.compare_digest(totp.generate_otp(candidate), code):
                    step = candidate
                    break
            if step is None or step <= row[1]:
                if step is not None:
                    logger.warning("staff %s: TOTP code replayed (step %d already used)", session.username, step)
                return False
            self.db.execute("UPDATE staff_users SET last_totp_step = ? WHERE username = ?", [step, session.username])
            self.db.execute("UPDATE staff_sessions SET stage = 'full', expires_at = ? WHERE token_hash = ?",
                            [iso(self.clock() + timedelta(hours=self.session_hours)), token_hash(token)])
            record_audit(self.db, self.clock(), session.username, "login")
        return True

    def _new_session(self, username: str, stage: str, lifetime: timedelta) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self.producer.atomic():
            self.db.execute("DELETE FROM staff_sessions WHERE expires_at < ?", [iso(now)])
            self.db.execute("INSERT INTO staff_sessions (token_hash, username, stage, csrf, created_at, expires_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            [token_hash(token), username, stage, secrets.token_urlsafe(24), iso(now),
                             iso(now + lifetime)])
        return token

    def session(self, token: str | None) -> StaffSession | None:
        """The live session behind a cookie value."""
        if not token:
            return None
        with self.producer.lock:
            row = self.db.execute(
                "SELECT s.username, u.role, s.stage, s.csrf, u.must_change_password, s.expires_at "
                "FROM staff_sessions s JOIN staff_users u USING (username) "
                "WHERE s.token_hash = ? AND s.expires_at > ? AND u.disabled = 0",
                [token_hash(token), iso(self.clock())]
            ).fetchone()
        return StaffSession(row[0], row[1], row[2], row[3], bool(row[4]), parse_iso(row[5])) if row else None

    def change_password(self, token: str, password: str, current: str) -> int:
        """The signed-in user sets their own new password: `current` must be their password unless a reset
        made them choose a new one (WrongPassword), and `password` 12 characters or more (UserError). Their
        other sessions end (a password change is what someone does who fears it is known). Returns how many."""
        session = self.session(token)
        if session is None or session.stage != "full":
            raise WrongPassword("not signed in")
        if len(password) < 12:
            raise UserError("password: at least 12 characters")
        if not session.must_change_password:
            with self.producer.lock:
                stored = self.db.execute("SELECT password_hash FROM staff_users WHERE username = ?",
                                         [session.username]).fetchone()[0]
            try:
                _hasher.verify(stored, current)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                raise WrongPassword("the current password is wrong") from None
        with self.producer.atomic():
            self.db.execute("UPDATE staff_users SET password_hash = ?, must_change_password = 0 WHERE username = ?",
                            [_hasher.hash(password), session.username])
            ended = self.db.execute("DELETE FROM staff_sessions WHERE username = ? AND token_hash != ?",
                                    [session.username, token_hash(token)]).rowcount
            record_audit(self.db, self.clock(), session.username, "change_password",
                         detail=f"{ended} other sessions ended")
        return ended

    def logout(self, token: str) -> None:
        """End a session."""
        with self.producer.atomic():
            hashed = token_hash(token)
            row = self.db.execute("SELECT username FROM staff_sessions WHERE token_hash = ?", [hashed]).fetchone()
            self.db.execute("DELETE FROM staff_sessions WHERE token_hash = ?", [hashed])
            if row:
                record_audit(self.db, self.clock(), row[0], "logout")

    def known_address(self, username: str, address: str) -> bool:
        """Whether this account completed a sign-in from this address before (it is spared the account backoff)."""
        with self.producer.lock:
            return self.db.execute("SELECT 1 FROM staff_addresses WHERE username = ? AND address = ?",
                                   [username, address]).fetchone() is not None

    def remember_address(self, username: str, address: str) -> None:
        """Record a completed sign-in's address."""
        with self.producer.atomic():
            self.db.execute("INSERT INTO staff_addresses (username, address, last_login_at) VALUES (?, ?, ?) "
                            "ON CONFLICT(username, address) DO UPDATE SET last_login_at = excluded.last_login_at",
                            [username, address, iso(self.clock())])

    # -- API tokens ---------------------------------------------------------------------------------------------
    def create_api_token(self, name: str, scopes: frozenset[str] = frozenset({"preregister"})) -> str:
        """A new bearer token for the JSON API (shown once; only its hash is kept), allowed only `scopes`."""
        checked = check_scopes(scopes)
        token = "swk_" + secrets.token_urlsafe(32)
        with self.producer.atomic():
            if self.db.execute("SELECT 1 FROM api_tokens WHERE name = ?", [name]).fetchone():
                raise UserError(f"a token named {name!r} exists already; revoke it first")
            self.db.execute("INSERT INTO api_tokens (token_hash, name, created_at, scopes) VALUES (?, ?, ?, ?)",
                            [token_hash(token), name, iso(self.clock()), checked])
            record_audit(self.db, self.clock(), "admin-cli", "api_token", detail=f"created {name} ({checked})")
        return token

    def set_api_token_scopes(self, name: str, scopes: frozenset[str]) -> bool:
        """Change what an existing token may do; False when there is no such token."""
        checked = check_scopes(scopes)
        with self.producer.atomic():
            cur = self.db.execute("UPDATE api_tokens SET scopes = ? WHERE name = ?", [checked, name])
            if cur.rowcount == 1:
                record_audit(self.db, self.clock(), "admin-cli", "api_token", detail=f"scopes of {name}: {checked}")
            return cur.rowcount == 1

    def api_tokens(self) -> list[tuple[str, str]]:
        """(name, scopes) of every API token."""
        with self.producer.lock:
            return [(r[0], r[1]) for r in self.db.execute("SELECT name, scopes FROM api_tokens ORDER BY name")]

    def revoke_api_token(self, name: str) -> bool:
        """Revoke a token by name."""
        with self.producer.atomic():
            cur = self.db.execute("DELETE FROM api_tokens WHERE name = ?", [name])
            if cur.rowcount == 1:
                record_audit(self.db, self.clock(), "admin-cli", "api_token", detail=f"revoked {name}")
            return cur.rowcount == 1

    def api_client(self, token: str) -> ApiClient | None:
        """The API client holding this token, with its scopes."""
        with self.producer.lock:
            row = self.db.execute("SELECT name, scopes FROM api_tokens WHERE token_hash = ?",
                                  [token_hash(token)]).fetchone()
        return ApiClient(row[0], frozenset(row[1].split(","))) if row else None


class RateLimiter:
    """At most `limit` events per key within `window_s` (a sliding window, in memory)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._window = SlidingWindow(window_s)
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        """Whether any key has used up its allowance (does not count a hit)."""
        now = self.clock()
        with self._lock:
            return any(len(self._window.recent(k, now)) >= self.limit for k in keys)

    def hit(self, *keys: str) -> None:
        """Count one event against every key."""
        now = self.clock()
        with self._lock:
            for key in keys:
                self._window.add(key, now)

"""sqlite databases: one per service under the data directory, WAL mode, migrations recorded in the database."""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema step; its name is recorded in `_migrations` once applied."""

    name: str
    apply: Callable[[sqlite_utils.Database], None]


class StoreError(Exception):
    """A service's database cannot be opened or migrated."""


def is_disk_full(err: BaseException) -> bool:
    """True if `err`, or an error it was raised from or while handling, says the disk has no room left.

    sqlite says SQLITE_FULL ("database or disk is full"); a plain write says ENOSPC (or EDQUOT, over quota).
    A failed rollback can stand in front of the first error, hence the walk down the chain.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error) and getattr(current, "sqlite_errorcode", None) is not None:
            if current.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:
                return True
        elif isinstance(current, sqlite3.OperationalError) and "database or disk is full" in str(current):
            return True
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        current = current.__cause__ or current.__context__
    return False


def free_bytes(path: Path) -> int | None:
    """Bytes free for us on the file system holding `path`; None when it cannot be told."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def open_database(path: Path, migrations: Sequence[Migration]) -> sqlite_utils.Database:
    """Open (creating) a service database in WAL mode and apply the migrations it has not seen yet.

    `synchronous=FULL` makes a commit survive power loss, which is what "written durably before it is
    published" promises; callers batch writes into one transaction to keep that cheap.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(db, migrations)
    except (sqlite3.Error, OSError) as err:
        raise StoreError(f"cannot open database {path}: {err}") from err
    return db


def migrate(db: sqlite_utils.Database, migrations: Sequence[Migration]) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return the names applied."""
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": str}, pk="name")
    done = {row["name"] for row in db["_migrations"].rows}
    applied = []
    for migration in migrations:
        if migration.name in done:
            continue
        # An explicit BEGIN: Python's sqlite3 would run DDL outside any transaction.
        db.conn.execute("BEGIN")
        try:
            migration.apply(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                [migration.name, datetime.now(UTC).isoformat()],
            )
        except BaseException:
            db.conn.rollback()
            raise
        db.conn.commit()
        logger.info("applied migration %s", migration.name)
        applied.append(migration.name)
    return applied


def database_path(data_dir: Path, service: str) -> Path:
    """Where a service keeps its database."""
    return data_dir / f"{service}.db"


def run_script(db: sqlite_utils.Database, script: str) -> None:
    """Run `;`-separated statements inside the current transaction (executescript would commit first)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


class TransactionLost(sqlite3.OperationalError):
    """The transaction was undone underneath us (sqlite rolls back everything on some errors, a full disk
    among them): what remains to commit is only what ran after, so nothing may be committed or acknowledged."""


def is_storage_error(err: BaseException) -> bool:
    """True if `err` is the database's trouble, not the caller's: any sqlite error, or a full disk.

    Code that turns errors into "failed; continuing" must let these through: after one, the transaction may be
    gone (see `TransactionLost`), and committing what follows would store half a batch and acknowledge it all.
    """
    return isinstance(err, sqlite3.Error) or is_disk_full(err)


# A savepoint that spans the whole transaction: it disappears with it, so its RELEASE tells whether the
# transaction we began is the one we commit (sqlite opens a new one by itself for the next write).
_GUARD = "_transaction_guard"


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """One explicit transaction: everything inside commits together or not at all.

    sqlite-utils commits each write made through `db.execute()` by itself unless a transaction is
    already open, and Python's sqlite3 opens none for SELECT or DDL: so open it here, explicitly.
    Raises `TransactionLost` (and commits nothing) if the transaction was rolled back while inside.
    """
    if db.conn.in_transaction:
        yield
        return
    db.conn.execute("BEGIN")
    db.conn.execute(f'SAVEPOINT "{_GUARD}"')
    try:
        yield
        try:
            db.conn.execute(f'RELEASE "{_GUARD}"')
        except sqlite3.OperationalError as err:
            raise TransactionLost("the transaction was rolled back while in progress; nothing committed") from err
        if not db.conn.in_transaction:
            raise TransactionLost("the transaction ended while in progress; nothing committed")
    except BaseException:
        if db.conn.in_transaction:
            db.conn.rollback()
        raise
    try:
        db.conn.commit()
    except BaseException:
        # A commit that failed (disk full) may leave the transaction open: end it, or the next BEGIN fails.
        if db.conn.in_transaction:
            db.conn.rollback()
        raise


@contextmanager
def savepoint(db: sqlite_utils.Database, name: str = "item") -> Iterator[None]:
    """A nested transaction: on an exception only what happened inside is undone, then it is re-raised.

    Only inside a transaction: outside one, SAVEPOINT would begin a transaction of its own and RELEASE commit
    it, so work that follows a rolled-back transaction would be stored on its own.
    """
    if not db.conn.in_transaction:
        raise TransactionLost(f"savepoint {name} outside a transaction: the transaction was rolled back")
    db.conn.execute(f'SAVEPOINT "{name}"')
    try:
        yield
    except BaseException:
        # After SQLITE_FULL sqlite may have rolled back the whole transaction, savepoint and all.
        if db.conn.in_transaction:
            db.conn.execute(f'ROLLBACK TO "{name}"')
            db.conn.execute(f'RELEASE "{name}"')
        raise
    db.conn.execute(f'RELEASE "{name}"')

"""Key rotation: a new key becomes current, every sealed value is re-encrypted, the old key is dropped."""

from __future__ import annotations

import logging

from edge.config import Settings
from edge.events import utcnow
from kiosk.crypto import FieldCipher, load_keyring, write_keyring
from kiosk.desk import Desk, Storage
from kiosk.store import SEALED_VISIT_COLUMNS, record_audit
from kiosk.text import normalize_name

logger = logging.getLogger(__name__)


def rotate(settings: Settings, storage: Storage) -> int:
    """Rotate the kiosk keyring; returns how many values were re-encrypted.

    Order matters for a crash at any point: (1) the file gets the new key as current beside the old ones,
    (2) one transaction re-encrypts every value and recomputes the blind indexes, (3) the file drops the
    old keys. After (1) both keys open everything; after (2) only the new key is used.
    """
    from kiosk.service import key_path

    path = key_path(settings)
    ring = load_keyring(path).with_new_key()
    write_keyring(path, ring)
    new = FieldCipher(ring)  # holds the old keys too, so it opens what they sealed
    new_desk = Desk(settings, storage, new)
    count = 0
    with storage.atomic():
        db = storage.db
        cols = ", ".join(f"{c}_enc" for c in SEALED_VISIT_COLUMNS)
        for row in db.execute(f"SELECT id, {cols} FROM visits").fetchall():
            vid, blobs = row[0], row[1:]
            values = {c: new.open_bytes("visits", c, vid, b)
                      for c, b in zip(SEALED_VISIT_COLUMNS, blobs, strict=True)}
            sets = {f"{c}_enc": new.seal("visits", c, vid, v) for c, v in values.items()}
            count += sum(v is not None for v in values.values())
            if values["name"] is not None:
                name = values["name"].decode()
                email = values["email"].decode() if values["email"] else None
                company = values["company"].decode() if values["company"] else ""
                sets["person_index"] = new_desk.person_index(name, email, company)
                sets["name_index"] = new.index(normalize_name(name))
            assignments = ", ".join(f"{k} = ?" for k in sets)
            db.execute(f"UPDATE visits SET {assignments} WHERE id = ?", [*sets.values(), vid])
        for username, blob in db.execute("SELECT username, totp_enc FROM staff_users").fetchall():
            db.execute("UPDATE staff_users SET totp_enc = ? WHERE username = ?",
                       [new.seal("staff_users", "totp", username,
                                 new.open_bytes("staff_users", "totp", username, blob)), username])
            count += 1
        record_audit(db, utcnow(), "admin-cli", "rotate_key",
                     detail=f"{count} values re-encrypted under key {ring.current}")
    write_keyring(path, ring.only_current())
    logger.info("kiosk key rotated to %s (%d values)", ring.current, count)
    return count


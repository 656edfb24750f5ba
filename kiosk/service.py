"""`sitewarden run kiosk`: the web app, its scheduled jobs (overstay, end of day, anonymizing) and host notices."""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import uvicorn

from edge.config import Settings
from edge.events import Event
from edge.producer import FactProducer
from edge.publisher import MIGRATIONS as PUBLISH_MIGRATIONS
from edge.services import ServiceCannotStart, ServiceSpec
from edge.store import database_path, open_database, transaction
from kiosk import store
from kiosk.app import create_app
from kiosk.auth import StaffAuth
from kiosk.commands import kiosk as kiosk_commands
from kiosk.crypto import FieldCipher, load_keyring
from kiosk.desk import SERVICE_NAME, Desk
from kiosk.notify import Notifier

logger = logging.getLogger(__name__)

JOB_INTERVAL_S = 15.0
ANONYMIZE_EVERY_S = 3600.0


def key_path(settings: Settings) -> Path:
    """Where the visitor-data keyring lives."""
    return settings.kiosk.key_file or settings.data_dir / "kiosk.key"


def lock_path(settings: Settings) -> Path:
    """Held by the running kiosk service; key rotation needs it free."""
    return settings.data_dir / "kiosk.lock"


class ServiceRunning(Exception):
    """The kiosk service holds its lock (a command that must run without it was started)."""


@contextmanager
def service_lock(settings: Settings) -> Iterator[IO[str]]:
    """Exclusive lock on the kiosk's data: one running service, or one offline maintenance command."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServiceRunning(f"{path} is held: the kiosk service is running (stop it first)") from None
        yield fh
    finally:
        fh.close()


class OfflineStorage:
    """The kiosk database without a broker, for admin commands: facts cannot be published from here."""

    def __init__(self, settings: Settings) -> None:
        self.db = open_database(database_path(settings.data_dir, SERVICE_NAME),
                                (*PUBLISH_MIGRATIONS, *store.MIGRATIONS))
        self.db.conn.execute("PRAGMA secure_delete=ON")
        self.lock = threading.RLock()

    @contextmanager
    def atomic(self) -> Iterator[list[Event]]:
        with self.lock:
            facts: list[Event] = []
            with transaction(self.db):
                yield facts
                if facts:
                    raise RuntimeError("an offline command tried to publish facts")


class KioskService:
    """One kiosk: web server, jobs and notices over one database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = FactProducer(settings, SERVICE_NAME, migrations=store.MIGRATIONS)
        # Deleted visitor data is overwritten in the file, not left in free pages.
        self.producer.db.conn.execute("PRAGMA secure_delete=ON")
        self.cipher = FieldCipher(load_keyring(key_path(settings), create=True))
        self.desk = Desk(settings, self.producer, self.cipher)
        self.auth = StaffAuth(self.producer, self.cipher, settings.kiosk.staff_session_hours)
        self.app = create_app(settings, self.desk, self.auth)
        self.notifier = Notifier(self.desk, settings.kiosk.smtp) if settings.kiosk.smtp else None
        kiosk = settings.kiosk
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, host=kiosk.listen_host, port=kiosk.port, log_level="warning", access_log=False,
            ssl_certfile=str(kiosk.tls_cert_file) if kiosk.tls_cert_file else None,
            ssl_keyfile=str(kiosk.tls_key_file) if kiosk.tls_key_file else None,
            # The client address (sign-in limits) and scheme come from X-Forwarded-* only from a trusted proxy.
            proxy_headers=bool(kiosk.trusted_proxies), forwarded_allow_ips=list(kiosk.trusted_proxies),
            server_header=False, lifespan="off"))

    @property
    def url(self) -> str:
        """Where the kiosk answers."""
        kiosk = self.settings.kiosk
        scheme = "https" if kiosk.tls_cert_file else "http"
        return f"{scheme}://{kiosk.listen_host}:{kiosk.port}/"

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set."""
        self.producer.start()
        web = threading.Thread(target=self.server.run, name="kiosk-web", daemon=True)
        web.start()
        logger.info("kiosk: serving %s (%d hosts, watchlist %d names, SMTP %s)", self.url,
                    len(self.settings.kiosk.hosts), len(self.desk.watchlist),
                    self.settings.kiosk.smtp.host if self.settings.kiosk.smtp else "off")
        last_anonymize: float | None = None
        try:
            while not stop.is_set() and web.is_alive():
                now = time.monotonic()
                anonymize = last_anonymize is None or now - last_anonymize >= ANONYMIZE_EVERY_S
                self.run_jobs(anonymize)
                if anonymize:
                    last_anonymize = now
                stop.wait(JOB_INTERVAL_S)
            if not web.is_alive() and not stop.is_set():
                raise RuntimeError(f"the kiosk web server stopped (is port {self.settings.kiosk.port} in use?)")
        finally:
            self.server.should_exit = True
            web.join(10)
            self.producer.stop()

    def run_jobs(self, anonymize: bool) -> dict[str, Any]:
        """One round of scheduled work; a failing job is logged and the others still run."""
        done: dict[str, Any] = {}
        jobs = [("overstays", self.desk.report_overstays), ("end_of_day", self.desk.end_of_day),
                ("stale_flows", self.desk.drop_stale_flows)]
        if anonymize:
            jobs.append(("anonymize", self.desk.anonymize_old))
        if self.notifier is not None:
            jobs.append(("notices", self.notifier.run_once))
        for name, job in jobs:
            try:
                done[name] = job()
            except Exception:
                logger.exception("kiosk job %s failed; it runs again in %g s", name, JOB_INTERVAL_S)
        return done


def check_transport(settings: Settings) -> None:
    """Refuse plain HTTP on a network address: browsers drop the kiosk's Secure cookies there, so every form
    would fail. Plain HTTP is fine on loopback (the box's own screen, or a TLS proxy on the box in front)."""
    kiosk = settings.kiosk
    if kiosk.tls_cert_file is not None:
        return
    host = kiosk.listen_host.strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ServiceCannotStart(
            f"kiosk.listen_host: {kiosk.listen_host} would serve plain HTTP to other machines, whose browsers drop "
            "the kiosk's Secure cookies (every check-in would fail); set kiosk.tls_cert_file and kiosk.tls_key_file "
            "to serve HTTPS, or set kiosk.listen_host: 127.0.0.1 behind a TLS proxy on this box")


def run(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `sitewarden run kiosk`."""
    check_transport(settings)
    with service_lock(settings):
        KioskService(settings).run(stop)


def _simulate(settings: Settings, stop: threading.Event) -> None:
    from kiosk.demo import seed_demo

    seed_demo(settings, stop)


def _demo_settings(data_dir: Path) -> dict[str, Any]:
    from kiosk.demo import demo_settings

    return demo_settings(data_dir)


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    summary="visitor kiosk (check-in, badges, host notices, check-out) and the reception console",
    run=run,
    simulate=_simulate,
    demo_settings=_demo_settings,
    commands=kiosk_commands,
)

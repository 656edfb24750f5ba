"""Benchmark: the kiosk's check-in POST and the reception console page under 50 concurrent clients, with
10,000 stored visits, beside a bare FastAPI route served the same way (uvicorn, one process) in the same run.

Two loads per target: paced (each client sends 2 requests/s, 100/s in all: far above any reception, it
measures service time) and flat out (each client sends its next request as soon as the last answered: it
measures throughput, and latency there is mostly queueing). The load generator runs on the same 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import httpx
import pyotp
import yaml
from unshadow import percentile  # before the project imports: it takes bench/ off the path

from edge.brokers import MosquittoBroker, free_port
from edge.processes import stop_process

CLIENTS = 50
ON_SITE, EXPECTED = 60, 40
HOSTS = {f"host{i:02d}": {"name": f"Host Person {i:02d}", "department": "Dept"} for i in range(40)}


def seed(config: Path, visits: int) -> None:
    """10,000 visits: most of them past and checked out, 60 on site now, 40 expected today (a busy day at a
    large office: the console shows 100 rows)."""
    from edge.config import load_settings
    from edge.events import utcnow
    from kiosk.auth import StaffAuth
    from kiosk.commands import _open
    from kiosk.desk import Desk
    from kiosk.forms import VisitorDetails

    settings = load_settings(config)
    storage, cipher = _open(settings)
    desk = Desk(settings, storage, cipher)
    now = utcnow()
    rng = random.Random(7)
    with storage.atomic():
        for i in range(visits):
            details = VisitorDetails(f"Visitor {i:05d} {rng.choice(['Jansen', 'de Vries', 'Bakker', 'Visser'])}",
                                     f"Company {i % 300}", f"host{i % 40:02d}", "meeting",
                                     f"v{i}@example.invalid", None)
            kind = "expected" if i < EXPECTED else "on_site" if i < EXPECTED + ON_SITE else "past"
            start = now - timedelta(days=rng.uniform(0.5, 25)) if kind == "past" else now
            visit = desk.pre_register(details, start, start + timedelta(hours=4), "bench")
            if kind == "expected":
                continue
            storage.db.execute("UPDATE visits SET state = ?, checked_in_at = ?, checked_out_at = ?, badge_code = ?, "
                               "checked_out_by = ? WHERE id = ?",
                               ["on_site" if kind == "on_site" else "checked_out", start.isoformat(),
                                None if kind == "on_site" else (start + timedelta(hours=3)).isoformat(),
                                f"B{i:05d}", None if kind == "on_site" else "kiosk", visit.id])
    secret = StaffAuth(storage, cipher, 8).add_user("bench", "reception", "bench password 123")
    storage.db.conn.close()
    (config.parent / "totp").write_text(secret)


def wait_http(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def cookie(response: httpx.Response, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return header.split(";", 1)[0].split("=", 1)[1]
    raise SystemExit(f"no {name} cookie")


async def staff_cookie(base: str, secret: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/staff/login")
        csrf_cookie = cookie(page, "sw_csrf")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        headers = {"Cookie": f"sw_csrf={csrf_cookie}"}
        r = await client.post("/staff/login", data={"csrf": token, "username": "bench",
                                                     "password": "bench password 123"}, headers=headers)
        staff = cookie(r, "sw_staff")
        headers["Cookie"] += f"; sw_staff={staff}"
        r = await client.post("/staff/totp", data={"csrf": token, "code": pyotp.TOTP(secret).now()}, headers=headers)
        assert r.status_code == 303, r.text[:300]
        return staff


async def run_load(base: str, make_request, per_client_rate: float | None, seconds: float,
                   clients: int = CLIENTS) -> dict:
    """`clients` clients for `seconds`; returns latencies (ms), errors and rate."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        state = [await make_request.prepare(client) for _ in range(clients)]
        start = time.monotonic()
        end = start + seconds

        async def one(i: int) -> None:
            rng = random.Random(i)
            next_at = start + (rng.random() / per_client_rate if per_client_rate else 0)
            while True:
                if per_client_rate:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at += 1 / per_client_rate
                if time.monotonic() >= end:
                    return
                t0 = time.perf_counter()
                try:
                    ok = await make_request.send(client, state[i])
                except httpx.HTTPError as err:
                    ok = type(err).__name__
                latencies.append((time.perf_counter() - t0) * 1000)
                if ok is not True:
                    errors[str(ok)] = errors.get(str(ok), 0) + 1

        await asyncio.gather(*(one(i) for i in range(clients)))
        span = time.monotonic() - start
    latencies.sort()
    return {"n": len(latencies), "rate": len(latencies) / span, "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95), "max": latencies[-1] if latencies else 0, "errors": errors}


class BareGet:
    async def prepare(self, client):
        return None

    async def send(self, client, state):
        r = await client.get("/")
        return True if r.status_code == 200 else r.status_code


class BarePost:
    async def prepare(self, client):
        return None

    async def send(self, client, state):
        r = await client.post("/form", data={"name": "Bea", "host_id": "host01", "csrf": "x" * 32})
        return True if r.status_code == 200 else r.status_code


class CheckIn:
    async def prepare(self, client):
        page = await client.get("/checkin")
        return (cookie(page, "sw_csrf"), re.search(r'name="csrf" value="([^"]+)"', page.text).group(1))

    async def send(self, client, state):
        csrf_cookie, token = state
        r = await client.post("/checkin", data={"csrf": token, "name": f"Bench Visitor {random.randrange(10**6)}",
                                                "company": "Acme", "host_id": "host01", "purpose": "bench"},
                              headers={"Cookie": f"sw_csrf={csrf_cookie}"})
        return True if r.status_code == 303 else r.status_code


class Console:
    def __init__(self, staff: str) -> None:
        self.staff = staff

    async def prepare(self, client):
        return None

    async def send(self, client, state):
        r = await client.get("/staff", headers={"Cookie": f"sw_staff={self.staff}"})
        rows = r.text.count("data-visit=")
        return True if r.status_code == 200 and rows == ON_SITE + EXPECTED else f"{r.status_code}/{rows} rows"


def first_console(base: str, staff: str) -> float:
    """One console request before any other: the lists and rows are not kept yet."""
    t0 = time.perf_counter()
    r = httpx.get(base + "/staff", headers={"Cookie": f"sw_staff={staff}"})
    took = (time.perf_counter() - t0) * 1000
    if r.status_code != 200 or r.text.count("data-visit=") != ON_SITE + EXPECTED:
        raise SystemExit(f"console answered {r.status_code}")
    return took


async def mixed(base: str, staff: str, seconds: float) -> tuple[dict, dict]:
    half = CLIENTS // 2
    got = await asyncio.gather(run_load(base, CheckIn(), 2.0, seconds, half),
                               run_load(base, Console(staff), 2.0, seconds, half))
    return got[0], got[1]


def show(label: str, f: dict) -> str:
    errors = sum(f["errors"].values())
    detail = f" {f['errors']}" if errors else ""
    return (f"{label:34} {f['rate']:7.1f} req/s  p50 {f['p50']:6.1f} ms  p95 {f['p95']:6.1f} ms  "
            f"max {f['max']:6.1f} ms  errors {errors}{detail}")


def verdict(*figures: dict) -> str:
    return "PASS" if all(f["p95"] < 50 and not f["errors"] for f in figures) else "FAIL"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--visits", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each load phase")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-kiosk-"))
    broker = MosquittoBroker(work / "broker")
    kiosk = bare = None
    try:
        port, bare_port = free_port(), free_port()
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump({
            "site": {"id": "bench", "timezone": "Europe/Amsterdam"}, "data_dir": str(work / "data"),
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
            # The bench client speaks plain HTTP and sets cookies itself; the check-in limit is per client address,
            # and all 50 bench clients share 127.0.0.1.
            "kiosk": {"port": port, "hosts": HOSTS, "checkin_rate_per_min": 10**9}, "log": {"level": "WARNING"},
        }))
        t0 = time.monotonic()
        seed(config, args.visits)
        print(f"seeded {args.visits} visits in {time.monotonic() - t0:.1f} s")
        kiosk = subprocess.Popen([sys.executable, "-m", "edge.cli", "--config", str(config), "run", "kiosk"], cwd=work,
                                 stdout=open(work / "kiosk.log", "wb"), stderr=subprocess.STDOUT)
        bare = subprocess.Popen([sys.executable, "-m", "uvicorn", "kiosk_bare:app", "--port", str(bare_port),
                                 "--log-level", "warning", "--no-access-log"], cwd=Path(__file__).parent,
                                stdout=open(work / "bare.log", "wb"), stderr=subprocess.STDOUT)
        base, bare_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        wait_http(base + "/")
        wait_http(bare_base + "/")
        staff = asyncio.run(staff_cookie(base, (config.parent / "totp").read_text()))
        cold = first_console(base, staff)
        results = {}
        for load, rate in (("paced 2/s per client", 2.0), ("flat out", None)):
            results[("bare GET", load)] = asyncio.run(run_load(bare_base, BareGet(), rate, args.seconds))
            results[("bare form POST", load)] = asyncio.run(run_load(bare_base, BarePost(), rate, args.seconds))
            results[("kiosk check-in POST", load)] = asyncio.run(run_load(base, CheckIn(), rate, args.seconds))
            results[("kiosk console page", load)] = asyncio.run(run_load(base, Console(staff), rate, args.seconds))
        # Mixed, paced: half the clients check in while the other half reload the console, so the console's
        # kept lists are invalidated by every check-in (its rows stay kept: a check-in's first step adds none).
        mixed_in, mixed_console = asyncio.run(mixed(base, staff, args.seconds))
    finally:
        for proc in (kiosk, bare):
            if proc is not None:
                stop_process(proc, 10)
        broker.stop()
    print(f"{CLIENTS} concurrent clients, {args.visits} stored visits ({ON_SITE} on site, {EXPECTED} expected), "
          f"{args.seconds:g} s per phase")
    print(f"kiosk console page, first request after start (cold caches): {cold:.1f} ms")
    for (target, load), figures in results.items():
        print(show(f"{target}, {load}", figures))
    print(show(f"mixed: check-in, {CLIENTS // 2} clients", mixed_in))
    print(show(f"mixed: console, {CLIENTS // 2} clients", mixed_console))
    for load in ("paced 2/s per client", "flat out"):
        checkin, console = results[("kiosk check-in POST", load)], results[("kiosk console page", load)]
        post, get = results[("bare form POST", load)], results[("bare GET", load)]
        print(f"{load}: check-in p95 {checkin['p95']:.1f} ms ({checkin['p95'] / post['p95']:.1f}x bare POST), "
              f"console p95 {console['p95']:.1f} ms ({console['p95'] / get['p95']:.1f}x bare GET); "
              f"target p95 < 50 ms, no errors: {verdict(checkin, console)}")
    print(f"mixed, paced: check-in p95 {mixed_in['p95']:.1f} ms, console p95 {mixed_console['p95']:.1f} ms; "
          f"target p95 < 50 ms, no errors: {verdict(mixed_in, mixed_console)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

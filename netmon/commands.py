"""`sitewarden netmon ...`: replay captures for forensics, and the station inventory's CSV import/export."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edge.config import load_settings

if TYPE_CHECKING:
    from netmon.engine import Engine
    from netmon.findings import Finding


@click.group("netmon")
def netmon() -> None:
    """Network monitoring: pcap replay and the station inventory.

    Example: sitewarden netmon replay capture.pcapng
    """


@netmon.command("replay")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--known", "known_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV with a 'mac' column of known stations (default: the site's inventory, when it exists).")
@click.option("--reference", is_flag=True, help="Parse with scapy's full dissection instead of the fast path "
              "(slow; for checking the fast path).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per finding instead of text.")
@click.pass_context
def replay(ctx: click.Context, files: tuple[Path, ...], known_csv: Path | None, reference: bool,
           as_json: bool) -> None:
    """Run pcap/pcapng files through every detector with the site's netmon settings and print the findings,
    then the frame counters. Nothing is published or stored.

    Example: sitewarden netmon replay wired.pcap wifi.pcapng --known stations.csv
    """
    from netmon.inventory import Inventory, InventoryError
    from netmon.startup import copy_inventory, make_engine, open_inventory, site_inventory_path

    settings = load_settings(ctx.obj.get("config") if ctx.obj else None)
    site_db = site_inventory_path(settings.data_dir)
    with tempfile.TemporaryDirectory(prefix="sitewarden-replay-") as scratch:
        # Judged against what the service knows (stations approved or already reported, access points), on a
        # private copy: a replay stores nothing. --known replaces the site's stations with the CSV's.
        copy = copy_inventory(site_db, Path(scratch) / "inventory.db") if site_db.is_file() else None
        try:
            if known_csv is None:
                inventory = open_inventory(settings.netmon, copy or ":memory:")
            else:
                inventory = open_inventory(settings.netmon)
                if copy is not None:
                    aps = Inventory(copy).approved_aps()
                    inventory.import_aps_csv(["bssid,ssid", *[_csv_row(b, s) for b, s in aps]])
                inventory.import_csv(known_csv.read_text(encoding="utf-8").splitlines())
        except InventoryError as err:
            raise click.ClickException(f"{known_csv or site_db}: {err}") from None
        parse = None
        if reference:
            from netmon.reference import parse
        engine = make_engine(settings.netmon, inventory, parse=parse)
        _replay(engine, files, as_json)


def _replay(engine: Engine, files: tuple[Path, ...], as_json: bool) -> None:
    from netmon.engine import read_capture

    count = 0
    for path in files:
        try:
            for linktype, ts, frame in read_capture(path):
                for finding in engine.feed(linktype, ts, frame):
                    count += 1
                    _show(finding, path, as_json)
        except ValueError as err:
            raise click.ClickException(str(err)) from None
    c = engine.counters
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(c.reasons.items())) or "none"
    click.echo(f"{count} findings; frames: {c.received} read, {c.parsed} looked at by a detector, {c.malformed} "
               f"malformed ({reasons}), {c.suppressed} repeats folded", err=as_json)


def _csv_row(*values: str) -> str:
    import csv
    import io

    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue().rstrip("\r\n")


def _show(finding: Finding, path: Path, as_json: bool) -> None:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(finding.ts, UTC).isoformat(timespec="milliseconds")
    if as_json:
        click.echo(json.dumps({"at": when, "kind": finding.kind, "signature": finding.signature,
                               "file": str(path), **finding.fields}))
        return
    details = " ".join(f"{k}={v}" for k, v in finding.fields.items())
    click.echo(f"{when} {finding.signature:14} {finding.kind}: {details}")


@netmon.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV file to write; default standard output.")
@click.option("--aps", is_flag=True, help="The access points (bssid, ssid, channel, security, approved, "
              "first_seen, last_seen) instead of the stations.")
@click.pass_context
def export(ctx: click.Context, out: Path | None, aps: bool) -> None:
    """Write the station inventory as CSV (mac, vendor, ip, name, approved, first_seen, last_seen), or with
    --aps the access points heard.

    Example: sitewarden netmon export --out stations.csv
    """
    from netmon.inventory import Inventory

    settings = load_settings(ctx.obj.get("config") if ctx.obj else None)
    inventory = Inventory(settings.data_dir / "netmon" / "inventory.db")
    write = inventory.export_aps_csv if aps else inventory.export_csv
    if out is None:
        write(sys.stdout)
        return
    with out.open("w", newline="", encoding="utf-8") as fh:
        n = write(fh)
    click.echo(f"{n} {'access points' if aps else 'stations'} written to {out}")


@netmon.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_(ctx: click.Context, csv_file: Path) -> None:
    """Approve the stations in a CSV (a 'mac' column, optionally 'name'), or the access points in one with
    'bssid' and 'ssid' columns; all rows or none. The running service reads approvals at its next start.

    Example: sitewarden netmon import stations.csv
    """
    from netmon.inventory import Inventory, InventoryError

    settings = load_settings(ctx.obj.get("config") if ctx.obj else None)
    inventory = Inventory(settings.data_dir / "netmon" / "inventory.db")
    lines = csv_file.read_text(encoding="utf-8").splitlines()
    header = lines[0].lower() if lines else ""
    aps = "bssid" in header
    try:
        n = inventory.import_aps_csv(lines) if aps else inventory.import_csv(lines)
    except InventoryError as err:
        raise click.ClickException(f"{csv_file}: {err}; nothing was imported") from None
    click.echo(f"{n} {'access points' if aps else 'stations'} approved from {csv_file}")

"""`sitewarden badge ...`: cardholder CSV import/export and OSDP key provisioning."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge.config import ConfigError, Settings, load_settings
from edge.store import database_path, open_database
from firmware_bridge import cardholders
from firmware_bridge.cardholders import CardholderError, CardholderStore


def _settings(ctx: click.Context) -> Settings:
    try:
        return load_settings(ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as err:
        raise click.ClickException(str(err)) from err


def _store(settings: Settings) -> CardholderStore:
    return CardholderStore(open_database(database_path(settings.data_dir, "badge"), cardholders.MIGRATIONS))


@click.group()
def badge() -> None:
    """Badge readers and access decisions.

    Example: sitewarden badge cardholders import staff.csv
    """


@badge.group("cardholders")
def cardholders_group() -> None:
    """The cardholder list the badge service decides with (it picks up changes at the next swipe).

    Example: sitewarden badge cardholders export staff.csv
    """


@cardholders_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Replace the whole list (default: add and update by id).")
@click.pass_context
def import_(ctx: click.Context, csv_file: Path, replace: bool) -> None:
    """Import cardholders from CSV: id, name, credential (facility:card), card_format, enabled, valid_from,
    valid_until, doors (`;`-separated, `*` for all), schedule (`always` or `mon-fri 07:00-19:00; sat 09:00-13:00`).
    Nothing is imported when any row is bad; every bad row is listed.

    Example: sitewarden badge cardholders import --replace staff.csv
    """
    store = _store(_settings(ctx))
    try:
        holders = cardholders.parse_csv(csv_file.read_text(encoding="utf-8-sig"))
    except CardholderError as err:
        for problem in err.problems:
            click.echo(f"{csv_file}: {problem}", err=True)
        raise click.ClickException(f"{len(err.problems)} problem(s); nothing imported") from err
    if replace:
        store.replace_all(holders, source=f"csv:{csv_file.name}")
    else:
        store.upsert(holders)
    click.echo(f"imported {len(holders)} cardholders from {csv_file}; the list now holds {len(store)}")


@cardholders_group.command("export")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.pass_context
def export(ctx: click.Context, csv_file: Path | None) -> None:
    """Export the cardholder list as CSV (to stdout without a file).

    Example: sitewarden badge cardholders export staff.csv
    """
    text = cardholders.to_csv(_store(_settings(ctx)).all())
    if csv_file is None:
        sys.stdout.write(text)
    else:
        csv_file.write_text(text, encoding="utf-8")
        click.echo(f"wrote {text.count(chr(10)) - 1} cardholders to {csv_file}")


@badge.command("osdp-provision")
@click.argument("bus")
@click.argument("reader")
@click.option("--timeout", type=float, default=15.0, show_default=True, help="Seconds to wait for each step.")
@click.pass_context
def osdp_provision(ctx: click.Context, bus: str, reader: str, timeout: float) -> None:
    """Give an OSDP reader in install mode its Secure Channel key (from the reader's key_file), then verify it.
    Stop the badge service first: it holds the bus port.

    Example: sitewarden badge osdp-provision bus-1 lobby-in
    """
    from firmware_bridge.osdp_bus import load_key, provision_key

    settings = _settings(ctx)
    bus_settings = settings.badge.osdp.get(bus)
    if bus_settings is None:
        raise click.ClickException(f"no OSDP bus {bus!r} in badge.osdp (have: {', '.join(settings.badge.osdp) or '-'})")
    reader_settings = bus_settings.readers.get(reader)
    if reader_settings is None:
        raise click.ClickException(f"no reader {reader!r} in badge.osdp.{bus}.readers "
                                   f"(have: {', '.join(bus_settings.readers)})")
    try:
        message = provision_key(bus_settings.port, bus_settings.baudrate, reader_settings.address,
                                load_key(reader_settings.key_file), timeout)
    except TimeoutError as err:
        raise click.ClickException(f"{err}; is the reader in install mode and the badge service stopped?") from err
    click.echo(message)

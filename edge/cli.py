"""The `sitewarden` command: run services, the demo, alerts, config checks and event schemas."""

from __future__ import annotations

import getpass
import inspect
import json
import logging
import queue
import signal
import socket
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import click

from edge import __version__, topics
from edge.alerts import Alert, AlertMessage
from edge.bus import Bus, Inbound
from edge.config import ConfigError, ConfigMissing, Settings, load_settings
from edge.ids import new_id
from edge.services import ServiceCannotStart, discover, discover_commands
from edge.store import StoreError, database_path

logger = logging.getLogger(__name__)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _settings(ctx: click.Context) -> Settings:
    settings = load_settings(ctx.obj.get("config"))  # a ConfigError is shown by SitewardenGroup
    _setup_logging(settings.log.level)
    return settings


class ConfigUnusable(click.ClickException):
    """A command could not load its config: one line saying how to pass one, or every problem by key path."""

    def __init__(self, err: ConfigError) -> None:
        super().__init__(str(err))
        self.error = err
        self.exit_code = 2 if isinstance(err, ConfigMissing) else 1

    def show(self, file: Any = None) -> None:
        err = self.error
        if isinstance(err, ConfigMissing):
            click.echo(f"Error: {err}", err=True)
            return
        click.echo(f"Error: config {err.source}: {len(err.problems)} problem(s)", err=True)
        for problem in err.problems:
            click.echo(f"  {problem.path}: {problem.message}\n      value: {problem.value}", err=True)


class SitewardenGroup(click.Group):
    """The top-level group: wherever in the command tree a config fails to load (plug-in commands too, which
    load it themselves), the user gets `ConfigUnusable`'s lines, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as err:
            raise ConfigUnusable(err) from err
        except click.ClickException as err:
            if isinstance(err.__cause__, ConfigError) and not isinstance(err, ConfigUnusable):
                raise ConfigUnusable(err.__cause__) from err.__cause__
            raise


@click.group(cls=SitewardenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sitewarden")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="SITEWARDEN_CONFIG", help="YAML config file (default: $SITEWARDEN_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """SiteWarden: badge readers, visitor kiosk, cameras and network monitoring joined into alerts.

    Example: sitewarden --config /etc/sitewarden/config.yaml run edge
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@cli.command()
@click.argument("service")
@click.pass_context
def run(ctx: click.Context, service: str) -> None:
    """Run one service (edge, console, and each installed plug-in) until SIGTERM or Ctrl-C.

    Example: sitewarden --config config.yaml run edge
    """
    specs = discover()
    if service not in specs:
        raise click.BadParameter(f"unknown service {service!r}; installed: {', '.join(specs)}",
                                 param_hint="SERVICE")
    settings = _settings(ctx)
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        logger.info("signal %s: stopping %s", signum, service)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        specs[service].run(settings, stop)
    except (StoreError, PermissionError, ServiceCannotStart) as err:
        raise click.ClickException(f"{service} cannot start: {err}") from err


@cli.command()
@click.option("--duration", type=float, default=None, help="Stop by itself after this many seconds.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/demo"),
              show_default=True, help="Where the demo keeps its config, databases and logs.")
@click.option("--broker", type=click.Choice(["auto", "mosquitto", "embedded"]), default="auto", show_default=True,
              help="auto: mosquitto when installed, else the embedded amqtt broker.")
def demo(duration: float | None, data_dir: Path, broker: str) -> None:
    """Run the whole appliance on this machine with simulated devices and print alerts as they happen.

    Example: sitewarden demo --duration 60
    """
    from edge.demo import run_demo

    _setup_logging("WARNING")
    sys.exit(run_demo(duration, data_dir, broker))


@cli.group()
def alerts() -> None:
    """Watch, list, acknowledge and resolve alerts.

    Example: sitewarden alerts tail
    """


@alerts.command()
@click.option("--json", "as_json", is_flag=True, help="Print each message as JSON, one per line.")
@click.option("--count", type=int, default=None, help="Exit after this many messages.")
@click.pass_context
def tail(ctx: click.Context, as_json: bool, count: int | None) -> None:
    """Print alert messages from the local broker as they happen (Ctrl-C to stop).

    Example: sitewarden alerts tail --json
    """
    from edge.demo import format_alert_message

    settings = _settings(ctx)
    bus = Bus(settings.mqtt, client_id=f"sitewarden-tail-{new_id()[-12:]}", site=settings.site.id, service=None)
    bus.subscribe(topics.alerts_filter(settings.site.id))
    bus.start()
    if not bus.connected.wait(10):
        raise click.ClickException(f"cannot reach the local broker at {bus.where}")
    shown = 0
    try:
        while count is None or shown < count:
            item = bus.inbox.get()
            if not isinstance(item, Inbound):
                continue
            try:
                message = AlertMessage.model_validate_json(item.payload)
            except ValueError as err:
                click.echo(f"(unreadable message on {item.topic}: {str(err).splitlines()[0]})", err=True)
                continue
            click.echo(message.model_dump_json() if as_json else format_alert_message(message))
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        bus.stop()


def _open_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise click.ClickException(f"no database at {path}: has the service run with this data_dir?")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


@alerts.command("list")
@click.option("--console", "from_console", is_flag=True, help="List what the central console stored.")
@click.option("--state", type=click.Choice(["new", "acknowledged", "resolved"]), default=None,
              help="Only alerts in this state.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_(ctx: click.Context, from_console: bool, state: str | None, limit: int, as_json: bool) -> None:
    """List alerts, newest first, from this box's store (or the console's with --console).

    Example: sitewarden alerts list --state new
    """
    settings = _settings(ctx)
    service = "console" if from_console else "edge"
    conn = _open_readonly(database_path(settings.data_dir, service))
    where, args = ("WHERE state = ?", [state]) if state else ("", [])
    rows = conn.execute(f"SELECT payload FROM alerts {where} ORDER BY raised_at DESC LIMIT ?",
                        [*args, limit]).fetchall()
    conn.close()
    for (payload,) in rows:
        alert = Alert.model_validate_json(payload)
        if as_json:
            click.echo(alert.model_dump_json())
            continue
        where_ = alert.door or alert.device or alert.zone or "-"
        click.echo(f"{alert.alert_id}  {alert.raised_at.astimezone():%Y-%m-%d %H:%M:%S}  {alert.site:10} "
                   f"{alert.state.value:12} {alert.severity.value:8} {alert.kind:18} {where_:14} {alert.title}")
    if not rows and not as_json:
        click.echo("no alerts")


def _command(ctx: click.Context, name: str, alert_id: str, by: str | None, note: str | None,
             timeout: float) -> None:
    settings = _settings(ctx)
    site = settings.site.id
    request_id = new_id()
    bus = Bus(settings.mqtt, client_id=f"sitewarden-cli-{request_id[-12:]}", site=site, service=None)
    bus.subscribe(topics.reply_topic(site, "edge", request_id))
    bus.start()
    try:
        if not bus.connected.wait(timeout):
            raise click.ClickException(f"cannot reach the local broker at {bus.where}")
        # The subscription goes out in on_connect; the reply topic is private, so a short wait is enough
        # for the SUBACK before the request, and the request is retried once if no answer comes.
        payload = json.dumps({"request_id": request_id, "alert": alert_id,
                              "by": by or f"{getpass.getuser()}@{socket.gethostname()}", "note": note})
        reply = None
        for _attempt in range(2):
            bus.publish(topics.command_topic(site, "edge", name), payload.encode(), qos=1)
            try:
                while True:
                    item = bus.inbox.get(timeout=timeout / 2)
                    if isinstance(item, Inbound):
                        reply = json.loads(item.payload)
                        break
            except queue.Empty:  # lost on the way, or the edge is busy: ask once more
                reply = None
            if reply is not None:
                break
        if reply is None:
            raise click.ClickException(f"the edge service did not answer within {timeout:g} s; "
                                       "is `sitewarden run edge` running?")
        if not reply.get("ok"):
            raise click.ClickException(reply.get("error", "refused"))
        alert = Alert.model_validate(reply["alert"])
        resolved = alert.state.value == "resolved"
        who = alert.resolved_by if resolved else alert.acknowledged_by
        when = alert.resolved_at if resolved else alert.acknowledged_at
        if reply.get("changed"):
            click.echo(f"{alert.alert_id} {alert.kind} is {alert.state.value} (by {who})")
        else:
            stamp = f" at {when.astimezone():%Y-%m-%d %H:%M:%S}" if when else ""
            click.echo(f"{alert.alert_id} {alert.kind} was already {alert.state.value} (by {who}{stamp}); "
                       "nothing changed")
    finally:
        bus.stop()


@alerts.command()
@click.argument("alert_id")
@click.option("--by", default=None, help="Who acknowledges (default: user@host).")
@click.option("--note", default=None, help="A note for the record.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait for the edge service's answer.")
@click.pass_context
def ack(ctx: click.Context, alert_id: str, by: str | None, note: str | None, timeout: float) -> None:
    """Acknowledge an alert by its id (or 6+ characters of it): someone is on it.

    Example: sitewarden alerts ack 0193a5f2-7c1e --note "guard on the way"
    """
    _command(ctx, "alert_ack", alert_id, by, note, timeout)


@alerts.command()
@click.argument("alert_id")
@click.option("--by", default=None, help="Who resolves (default: user@host).")
@click.option("--note", default=None, help="What was found, for the record.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait for the edge service's answer.")
@click.pass_context
def resolve(ctx: click.Context, alert_id: str, by: str | None, note: str | None, timeout: float) -> None:
    """Resolve an alert by its id (or 6+ characters of it): handled and closed.

    Example: sitewarden alerts resolve 0193a5f2-7c1e --note "door was propped by cleaners"
    """
    _command(ctx, "alert_resolve", alert_id, by, note, timeout)


@cli.group()
def config() -> None:
    """Check a config file, or print the annotated example.

    Example: sitewarden config check /etc/sitewarden/config.yaml
    """


@config.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.pass_context
def check(ctx: click.Context, file: Path | None) -> None:
    """Validate a config file (and SITEWARDEN_* overrides); print every problem with its key path.

    Exits 0 when the config is usable, 1 when it is not.

    Example: sitewarden config check config.yaml
    """
    path = file or ctx.obj.get("config")
    if path is None:
        raise click.UsageError("give a FILE, --config or SITEWARDEN_CONFIG")
    try:
        settings = load_settings(path)
    except ConfigError as err:
        click.echo(f"{err.source}: {len(err.problems)} problem(s)", err=True)
        for problem in err.problems:
            click.echo(f"  {problem.path}: {problem.message}\n      value: {problem.value}", err=True)
        sys.exit(1)
    click.echo(f"{path}: ok (site {settings.site.id}, data in {settings.data_dir})")


@config.command()
def example() -> None:
    """Print the annotated example config.

    Example: sitewarden config example > /etc/sitewarden/config.yaml
    """
    from edge.config_example import render_example

    click.echo(render_example(Settings), nl=False)


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write one <kind>.json per fact kind (plus alert_message.json) into this folder.")
@click.option("--check", "check_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Exit 1 if the schemas in this folder are missing or differ from the code.")
def schema(out: Path | None, check_dir: Path | None) -> None:
    """Print (or write, or check) the JSON Schema of every event kind.

    Example: sitewarden schema --out docs/schemas
    """
    from edge.schemas import render_schemas

    rendered = render_schemas()
    if check_dir is not None:
        stale = [name for name, text in rendered.items()
                 if not (check_dir / name).exists() or (check_dir / name).read_text() != text]
        extra = sorted(p.name for p in check_dir.glob("*.json") if p.name not in rendered) \
            if check_dir.exists() else []
        if stale or extra:
            click.echo(f"stale: {', '.join(stale) or '-'}; not in code: {', '.join(extra) or '-'}; "
                       f"run: sitewarden schema --out {check_dir}", err=True)
            sys.exit(1)
        click.echo(f"{len(rendered)} schemas in {check_dir} match the code")
        return
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (out / name).write_text(text)
        click.echo(f"wrote {len(rendered)} schemas to {out}")
        return
    click.echo(json.dumps({name: json.loads(text) for name, text in rendered.items()}, indent=2))


def _add_service_commands() -> None:
    for name, spec in discover().items():
        if spec.commands is not None and name not in cli.commands:
            cli.add_command(spec.commands, name)
    for name, group in discover_commands().items():
        if name not in cli.commands:
            cli.add_command(group, name)


NEEDS_CONFIG = "Needs a config: `sitewarden --config FILE ...` or SITEWARDEN_CONFIG=FILE."


def _loads_config(func: Any, module: str | None = None, seen: set[int] | None = None) -> bool:
    """True when `func`, or a helper of its own module it calls, calls `load_settings`. Plug-in commands load
    their config themselves; this finds them without a marker in every plug-in."""
    func = inspect.unwrap(func)
    code = getattr(func, "__code__", None)
    seen = set() if seen is None else seen
    if code is None or id(func) in seen:
        return False
    seen.add(id(func))
    module = module or func.__module__
    codes, names = [code], set()
    while codes:
        current = codes.pop()
        names |= set(current.co_names)
        codes += [c for c in current.co_consts if inspect.iscode(c)]
    if "load_settings" in names:
        return True
    helpers = (func.__globals__.get(name) for name in names)
    return any(_loads_config(h, module, seen) for h in helpers
               if inspect.isfunction(h) and h.__module__ == module)


def needs_config(command: click.Command) -> bool:
    """Whether a command loads the config (its `needs_config` attribute, else found from its code)."""
    declared = getattr(command, "needs_config", None)
    if declared is not None:
        return bool(declared)
    return command.callback is not None and _loads_config(command.callback)


def _say_which_need_config(group: click.Group) -> None:
    """Put NEEDS_CONFIG into the help of every command that needs a config, just before its example."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _say_which_need_config(command)
        elif needs_config(command) and NEEDS_CONFIG not in (command.help or ""):
            paragraphs = inspect.cleandoc(command.help or "").split("\n\n")
            command.help = "\n\n".join([*paragraphs[:-1], NEEDS_CONFIG, paragraphs[-1]])


check.needs_config = False  # type: ignore[attr-defined]  # takes FILE itself, and reports what is wrong
_add_service_commands()
_say_which_need_config(cli)


def main() -> None:
    """Console-script entry point."""
    cli(obj={})


if __name__ == "__main__":
    main()

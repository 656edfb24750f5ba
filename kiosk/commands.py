"""`sitewarden kiosk ...`: staff accounts, API tokens, erasure, anonymizing, key rotation."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pyotp

from edge.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from kiosk.auth import StaffAuth


def _settings(ctx: click.Context) -> Settings:
    try:
        return load_settings(ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as err:
        raise click.ClickException(str(err)) from err


def _open(settings: Settings):
    from kiosk.crypto import FieldCipher, KeyFileError, load_keyring
    from kiosk.service import OfflineStorage, key_path

    try:
        cipher = FieldCipher(load_keyring(key_path(settings), create=True))
    except KeyFileError as err:
        raise click.ClickException(str(err)) from err
    return OfflineStorage(settings), cipher


@click.group()
def kiosk() -> None:
    """The visitor kiosk: staff accounts, API tokens, privacy commands.

    Example: sitewarden kiosk user add anna --role reception
    """


@kiosk.group("user")
def user() -> None:
    """Staff accounts of the reception console (password plus TOTP code).

    Example: sitewarden kiosk user list
    """


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["reception", "facilities", "admin"]), required=True,
              help="reception: visits; facilities: view and roll call; admin: everything and the audit log.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the password from this file instead of asking.")
@click.pass_context
def user_add(ctx: click.Context, username: str, role: str, password_file: Path | None) -> None:
    """Add a staff account and print its TOTP secret for an authenticator app (shown once).

    Example: sitewarden kiosk user add anna --role reception
    """
    from kiosk.auth import StaffAuth, UserError

    settings = _settings(ctx)
    storage, cipher = _open(settings)
    if password_file:
        password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    else:
        password = getpass.getpass("password (12+ characters): ")
        if getpass.getpass("again: ") != password:
            raise click.ClickException("the passwords differ; nothing was saved")
    try:
        secret = StaffAuth(storage, cipher, settings.kiosk.staff_session_hours).add_user(username, role, password)
    except UserError as err:
        raise click.ClickException(str(err)) from err
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=f"SiteWarden {settings.site.id}")
    click.echo(f"user {username} ({role}) added.\nTOTP secret: {secret}\nauthenticator URI: {uri}")


@user.command("list")
@click.pass_context
def user_list(ctx: click.Context) -> None:
    """List staff accounts.

    Example: sitewarden kiosk user list
    """
    from kiosk.auth import StaffAuth

    settings = _settings(ctx)
    storage, cipher = _open(settings)
    for name, role, disabled in StaffAuth(storage, cipher, 1).users():
        click.echo("\t".join([name, role, *(["disabled"] if disabled else [])]))


def _actor() -> str:
    """Who runs an admin command: the OS account (audit rows name it)."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a bare container): the uid still says who
        import os

        return f"os:uid{os.getuid()}"


BY_HELP = "A note kept in the audit row beside your OS user name (a ticket, who asked)."


def _account_command(name: str) -> Callable[[Callable[..., None]], click.Command]:
    """`sitewarden kiosk user NAME USERNAME [--by NOTE]`: the shape every account change shares."""

    def make(func: Callable[..., None]) -> click.Command:
        func = click.pass_context(func)
        func = click.option("--by", "note", default="", help=BY_HELP)(func)
        return user.command(name)(click.argument("username")(func))

    return make


def _account_change(ctx: click.Context, change: Callable[[StaffAuth], object]) -> object:
    from kiosk.auth import StaffAuth, UserError

    settings = _settings(ctx)
    storage, cipher = _open(settings)
    try:
        return change(StaffAuth(storage, cipher, settings.kiosk.staff_session_hours))
    except UserError as err:
        raise click.ClickException(str(err)) from err


@_account_command("disable")
def user_disable(ctx: click.Context, username: str, note: str) -> None:
    """Disable a staff account: its sessions end at once and it cannot sign in until enabled again.

    Example: sitewarden kiosk user disable anna --by "left the company, ticket 311"
    """
    _account_change(ctx, lambda auth: auth.set_disabled(username, True, _actor(), note))
    click.echo(f"user {username} disabled; their sessions have ended")


@_account_command("enable")
def user_enable(ctx: click.Context, username: str, note: str) -> None:
    """Enable a disabled staff account again.

    Example: sitewarden kiosk user enable anna
    """
    _account_change(ctx, lambda auth: auth.set_disabled(username, False, _actor(), note))
    click.echo(f"user {username} enabled")


@_account_command("remove")
def user_remove(ctx: click.Context, username: str, note: str) -> None:
    """Remove a staff account and end its sessions (the audit log keeps what it did).

    Example: sitewarden kiosk user remove anna --by "ticket 311"
    """
    _account_change(ctx, lambda auth: auth.remove_user(username, _actor(), note))
    click.echo(f"user {username} removed; their sessions have ended")


@_account_command("reset-password")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Set the password from this file instead of printing a one-time password.")
def user_reset_password(ctx: click.Context, username: str, password_file: Path | None, note: str) -> None:
    """Give a staff account a new password and end its sessions. Without --password-file a one-time password
    is printed, to be handed over in person; the account is marked to change it.

    Example: sitewarden kiosk user reset-password anna --by "forgot it, ticket 312"
    """
    given = password_file.read_text(encoding="utf-8").rstrip("\r\n") if password_file else None
    new = _account_change(ctx, lambda auth: auth.reset_password(username, _actor(), note, given))
    click.echo(f"password of {username} reset; their sessions have ended")
    if given is None:
        click.echo(f"one-time password: {new}")


@_account_command("reset-2fa")
def user_reset_2fa(ctx: click.Context, username: str, note: str) -> None:
    """Give a staff account a new TOTP secret (the old authenticator entry stops working) and end its sessions.
    Passkeys would be removed too; the console has none today.

    Example: sitewarden kiosk user reset-2fa anna --by "lost phone, ticket 313"
    """
    settings = _settings(ctx)
    secret = str(_account_change(ctx, lambda auth: auth.reset_totp(username, _actor(), note)))
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=f"SiteWarden {settings.site.id}")
    click.echo(f"second factor of {username} reset; their sessions have ended.\nTOTP secret: {secret}\n"
               f"authenticator URI: {uri}")


@kiosk.group("api-token")
def api_token() -> None:
    """Bearer tokens for the pre-registration JSON API (/api/v1). A token reaches only the visits it made.

    Scopes: preregister (create visits, read the host directory), read-own (read and list its own visits),
    cancel-own (cancel its own expected visits). Tokens made before scopes existed have only preregister.

    Example: sitewarden kiosk api-token create hr-system --scope preregister,read-own
    """


def _scopes(value: str) -> frozenset[str]:
    from kiosk.auth import UserError, check_scopes

    scopes = frozenset(s.strip() for s in value.split(",") if s.strip())
    try:
        check_scopes(scopes)
    except UserError as err:
        raise click.BadParameter(str(err)) from err
    return scopes


SCOPE_HELP = "Comma-separated: preregister, read-own, cancel-own."


@api_token.command("create")
@click.argument("name")
@click.option("--scope", "scope", default="preregister", show_default=True, help=SCOPE_HELP)
@click.pass_context
def token_create(ctx: click.Context, name: str, scope: str) -> None:
    """Create a token for an API client and print it (only its hash is kept).

    Example: sitewarden kiosk api-token create hr-system --scope preregister,read-own,cancel-own
    """
    from kiosk.auth import StaffAuth, UserError

    scopes = _scopes(scope)
    storage, cipher = _open(_settings(ctx))
    try:
        click.echo(StaffAuth(storage, cipher, 1).create_api_token(name, scopes))
    except UserError as err:
        raise click.ClickException(str(err)) from err


@api_token.command("scope")
@click.argument("name")
@click.option("--scope", "scope", required=True, help=SCOPE_HELP)
@click.pass_context
def token_scope(ctx: click.Context, name: str, scope: str) -> None:
    """Set what an existing token may do (replaces its scopes; the token itself stays the same).

    Example: sitewarden kiosk api-token scope hr-system --scope preregister,read-own
    """
    from kiosk.auth import StaffAuth

    scopes = _scopes(scope)
    storage, cipher = _open(_settings(ctx))
    if not StaffAuth(storage, cipher, 1).set_api_token_scopes(name, scopes):
        raise click.ClickException(f"no token named {name!r}")
    click.echo(f"token {name}: {','.join(sorted(scopes))}")


@api_token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """List API tokens and their scopes (never the tokens).

    Example: sitewarden kiosk api-token list
    """
    from kiosk.auth import StaffAuth

    storage, cipher = _open(_settings(ctx))
    for name, scopes in StaffAuth(storage, cipher, 1).api_tokens():
        click.echo(f"{name}\t{scopes}")


@api_token.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Revoke an API client's token.

    Example: sitewarden kiosk api-token revoke hr-system
    """
    from kiosk.auth import StaffAuth

    storage, cipher = _open(_settings(ctx))
    if not StaffAuth(storage, cipher, 1).revoke_api_token(name):
        raise click.ClickException(f"no token named {name!r}")
    click.echo(f"token {name} revoked")


@kiosk.command("erase")
@click.option("--name", required=True, help="The person's name (matched ignoring case, accents and spacing).")
@click.option("--by", "actor", default="admin-cli", show_default=True, help="Who asked (kept in the audit log).")
@click.pass_context
def erase(ctx: click.Context, name: str, actor: str) -> None:
    """Erase every visit of one person (a GDPR/AVG erasure request). The audit log keeps a count, not the name.

    Example: sitewarden kiosk erase --name "Jan de Vries" --by "dpo ticket 2026-114"
    """
    from kiosk.desk import Desk

    settings = _settings(ctx)
    storage, cipher = _open(settings)
    count = Desk(settings, storage, cipher).erase_person(name, actor)
    if not count:
        raise click.ClickException(f"no visits found for {name!r} (the name is matched ignoring case, accents and "
                                   "spacing; the request is in the audit log)")
    click.echo(f"{count} visit(s) erased")


@kiosk.command("anonymize")
@click.pass_context
def anonymize(ctx: click.Context) -> None:
    """Anonymize visits older than `kiosk.retention_days` now (the service also does this every hour).

    Example: sitewarden kiosk anonymize
    """
    from kiosk.desk import Desk

    settings = _settings(ctx)
    storage, cipher = _open(settings)
    click.echo(f"{Desk(settings, storage, cipher).anonymize_old()} visit(s) anonymized")


@kiosk.command("rotate-key")
@click.pass_context
def rotate_key(ctx: click.Context) -> None:
    """Re-encrypt all visitor data under a new key, then drop the old one. Stop the kiosk service first
    (systemctl stop sitewarden-kiosk), and start it again after.

    Example: sitewarden kiosk rotate-key
    """
    from kiosk.rotate import rotate
    from kiosk.service import ServiceRunning, service_lock

    settings = _settings(ctx)
    try:
        with service_lock(settings):
            storage, _ = _open(settings)
            count = rotate(settings, storage)
    except ServiceRunning as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"re-encrypted {count} values under a new key; the old key is gone")


@kiosk.command("totp")
@click.argument("secret")
def totp_now(secret: str) -> None:
    """Print the current code of a TOTP secret (for trying the demo without an authenticator app).

    Example: sitewarden kiosk totp JBSWY3DPEHPK3PXP
    """
    try:
        click.echo(pyotp.TOTP(secret).now())
    except Exception as err:
        click.echo(f"not a TOTP secret: {err}", err=True)
        sys.exit(1)

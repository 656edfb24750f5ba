"""`sitewarden config example`: the annotated example config, generated from the settings models so it never drifts.

Every field appears with its description and default, and the enabled lines hold nothing but defaults: copied as
is, the example runs on them. A required key has no default: it shows the placeholder the model declares
(`Field(examples=[...])`), which `config check` refuses until the user puts in their own value. Everything else a
model shows as an example (json_schema_extra `disabled_example`; on `Settings` for whole sections: doors, hosts,
networks, a console to forward to) is one made-up site's value, so it is written disabled: its lines start with
`#~ `, and removing that prefix turns it on.
"""

from __future__ import annotations

import re
import textwrap
import types
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

DISABLED = "#~ "
WIDTH = 110
HEADER = """\
SiteWarden configuration: one file for every service on the box. Generated from the settings models by
`sitewarden config example`: every key is here, with what it does and its default.
Check it with:   sitewarden config check /etc/sitewarden/config.yaml
Any key can be overridden from the environment: SITEWARDEN_<SECTION>__<KEY>, e.g.
  SITEWARDEN_EDGE__RULES__MAX_OPEN_S=45
Secrets are never written here: give the path of a file that holds them (`*_file` keys).
Copied as is, this file runs on defaults once you replace the one placeholder (site.id). Lines starting
with `#~ ` are a disabled example, values of a made-up site: put in your own and remove the `#~ ` to use them.
A key left empty takes its default."""


def disabled_example(field: FieldInfo) -> Any:
    """The disabled example a field declares (json_schema_extra `disabled_example`), or None."""
    extra = field.json_schema_extra
    return extra.get("disabled_example") if isinstance(extra, dict) else None


def enable(text: str) -> str:
    """The example with every disabled block turned on (what a user gets by removing the `#~ ` prefixes)."""
    pattern = re.compile(rf"^(\s*){re.escape(DISABLED)}", flags=re.MULTILINE)
    while pattern.search(text):  # a disabled example inside a disabled one has two prefixes
        text = pattern.sub(r"\1", text)
    return text


def render_example(settings_cls: type[BaseModel]) -> str:
    """The annotated example config for `settings_cls` (edge.config.Settings) as YAML text."""
    lines = [f"# {line}".rstrip() for line in HEADER.splitlines()]
    for line in _model_lines(settings_cls, {}, 0, top=True):
        lines.append(line)
    return "\n".join(lines) + "\n"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type without Annotated/Optional, whether None is allowed)."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _plain(value: Any) -> Any:
    """JSON-like values for YAML: paths, addresses and dates as text, models as their dumps."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=False)
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Path | IPv4Address | IPv4Network | IPv6Address | IPv6Network):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _flow(value: Any) -> str:
    """One YAML value on one line."""
    return yaml.safe_dump([_plain(value)], default_flow_style=True, width=10**6, allow_unicode=True).strip()[1:-1]


def _default(field: FieldInfo) -> Any:
    if field.default is not PydanticUndefined:
        return field.default
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return PydanticUndefined


def _comment(field: FieldInfo, indent: int, show_default: bool) -> list[str]:
    text = (field.description or "").strip()
    default = _default(field)
    if default is PydanticUndefined:
        text += " (required)"
    elif show_default:
        text += " (default:\0" + _flow(default).replace(" ", "\0") + ")"  # kept on one line
    pad = " " * indent
    return [line.replace("\0", " ") for line in
            textwrap.wrap(text, WIDTH - indent - 2, initial_indent=f"{pad}# ", subsequent_indent=f"{pad}# ")]


def _model_lines(model: type[BaseModel], values: dict[str, Any], indent: int, disabled: dict[str, Any] | None = None,
                 top: bool = False) -> Iterator[str]:
    pad = " " * indent
    for name, field in model.model_fields.items():
        if field.exclude:  # refused keys (inline passwords): not something to start from
            continue
        if top:
            yield ""
        kind, _ = _unwrap(field.annotation)
        sub = _model_of(kind)
        required = _default(field) is PydanticUndefined
        if field.examples and not required:
            raise ValueError(f"{model.__name__}.{name} has a default: its example would be written on, so declare "
                             "it as a disabled_example")
        has_value = name in values
        if has_value:
            value = values[name]
        elif field.examples:  # a required key's placeholder
            value, has_value = field.examples[0], True
        elif required and sub is not None:  # a required section: its own required keys show their placeholders
            value = {}
        else:
            value = _default(field)
        if value is PydanticUndefined:
            raise ValueError(f"{model.__name__}.{name} is required and declares no placeholder example")
        off = _plain((disabled or {}).get(name, disabled_example(field)))
        origin = get_origin(kind)
        item = _model_of(get_args(kind)[-1]) if origin in (dict, list) and get_args(kind) else None
        yield from _comment(field, indent, show_default=sub is None and (item is None or has_value))
        if sub is not None:
            yield f"{pad}{name}:"
            if value is None:  # an optional section, off by default: shown disabled
                yield from _disable(_model_lines(sub, off or {}, indent + 2), indent + 2)
            else:
                yield from _model_lines(sub, _plain(value), indent + 2, off if isinstance(off, dict) else None)
        elif item is not None:
            entries = (_plain(value) or {}) if origin is dict else (_plain(value) or [])
            if entries:
                yield f"{pad}{name}:"
                yield from _entries(item, origin, entries, indent + 2)
            elif off:
                yield f"{pad}{name}:"
                yield from _disable(_entries(item, origin, off, indent + 2), indent + 2)
            else:
                yield f"{pad}{name}: {'{}' if origin is dict else '[]'}"
        elif origin is dict and value:
            yield f"{pad}{name}:"
            for key, item_value in _plain(value).items():
                yield f"{pad}  {_flow(key)}: {_flow(item_value)}"
        elif off is not None:  # left out, it keeps the default the comment names
            yield from _disable([f"{pad}{name}: {_flow(off)}"], indent)
        else:
            yield f"{pad}{name}: {_flow(value)}"


def _entries(item: type[BaseModel], origin: Any, entries: Any, indent: int) -> Iterator[str]:
    pad = " " * indent
    if origin is dict:
        for key, entry in entries.items():
            yield f"{pad}{_flow(key)}:"
            yield from _model_lines(item, entry, indent + 2)
    else:
        for entry in entries:
            yield f"{pad}-"
            yield from _model_lines(item, entry, indent + 2)


def _disable(lines: Iterable[str], indent: int) -> Iterator[str]:
    """The lines of a block at `indent`, each with the disabled prefix at that column."""
    for line in lines:
        yield f"{line[:indent]}{DISABLED}{line[indent:]}"

"""Building blocks every config section uses: the strict section base, file checks, door ids."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from edge.topics import NAME_PATTERN

DoorId = Annotated[str, Field(pattern=NAME_PATTERN)]


def _readable_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"file {str(path)!r} does not exist")
    if not os.access(path, os.R_OK):
        raise ValueError(f"file {str(path)!r} is not readable by this user")
    return path


SecretFile = Annotated[Path, AfterValidator(_readable_file)]
ExistingFile = Annotated[Path, AfterValidator(_readable_file)]


def read_secret(path: Path) -> str:
    """Read a secret from its file, without the trailing newline editors add."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def empty_takes_default(model: type[BaseModel], name: str, value: Any) -> Any:
    """A key left empty in YAML (`osdp:` with its entries commented out) means "not set": its default, unless
    the field takes None itself. A required field stays an error."""
    if value is not None:
        return value
    field = model.model_fields.get(name)
    if field is None or field.is_required():
        return value
    annotation = field.annotation
    if annotation is None or type(None) in get_args(annotation) or annotation is type(None):
        return value
    return field.get_default(call_default_factory=True)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, an empty key is its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        return empty_takes_default(cls, info.field_name or "", value)

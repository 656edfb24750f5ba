"""Building blocks every config section uses: the strict section base, file checks, door ids."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

"""Alerts: what a person must look at, with severity, the facts behind it, evidence and a lifecycle."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge.events import Name, UtcDatetime
from edge.ids import new_id

MAX_FACT_IDS = 50
# sqlite's INTEGER is 64-bit signed: a larger sequence number could be validated but never stored.
MAX_SEQ = 2**63 - 1


class Severity(StrEnum):
    """How urgent an alert is."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """1 (low) to 4 (critical); eviction takes the lowest first."""
        return _RANK[self]


_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class AlertState(StrEnum):
    """Lifecycle of an alert: a person acknowledges it, and a person or its rule resolves it."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Evidence(BaseModel):
    """A reference to something that backs an alert (a snapshot, a pcap snippet, a note)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["snapshot", "pcap", "note"] = Field(description="What the evidence is.")
    ref: str = Field(description="Path under the data directory, or the note's text.")


class Alert(BaseModel):
    """The current state of one alert."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str = Field(description="Unique, time-sortable id.")
    site: Name = Field(description="Site that raised it.")
    kind: Name = Field(description="What happened, e.g. `door_forced_open`.")
    severity: Severity = Field(description="low, medium, high or critical.")
    title: str = Field(description="One line for a person.")
    door: str | None = Field(default=None, description="Door id, when it concerns a door.")
    zone: str | None = Field(default=None, description="Zone, when it concerns an area.")
    device: str | None = Field(default=None, description="Device id, when it concerns a device.")
    fact_ids: tuple[str, ...] = Field(default=(), description=f"Ids of the facts behind it (first {MAX_FACT_IDS}).")
    evidence: tuple[Evidence, ...] = Field(default=(), description="Snapshots, pcap snippets, notes.")
    dedupe_key: str = Field(description="Repeats with this key inside the suppression window fold into this alert.")
    count: int = Field(default=1, ge=1, description="How many occurrences were folded into it.")
    state: AlertState = Field(default=AlertState.NEW, description="new, acknowledged or resolved.")
    raised_at: UtcDatetime = Field(description="When it was raised.")
    last_seen_at: UtcDatetime = Field(description="When its latest occurrence was seen.")
    acknowledged_by: str | None = Field(default=None, description="Who acknowledged it.")
    acknowledged_at: UtcDatetime | None = Field(default=None, description="When it was acknowledged.")
    resolved_by: str | None = Field(default=None, description="Who (or which rule) resolved it.")
    resolved_at: UtcDatetime | None = Field(default=None, description="When it was resolved.")
    note: str | None = Field(default=None, description="Latest note from a person or rule.")


class AlertMessage(BaseModel):
    """One lifecycle message about an alert (Frigate style: new, update, end), as sent on MQTT."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field(default_factory=new_id, description="Unique id; the console dedupes by it.")
    v: Literal[1] = Field(default=1, description="Schema version of the message and the alert in it.")
    seq: int = Field(default=0, ge=0, le=MAX_SEQ,
                     description="The site's outbox sequence number; orders a site's messages.")
    type: Literal["new", "update", "end"] = Field(description="new when raised, update on change, end on resolve.")
    alert: Alert = Field(description="The alert as it is after this change.")


class AlertBatch(BaseModel):
    """Alert messages of one site in sequence order, forwarded to the console in one MQTT message.

    Each message keeps its own id: the console stores and dedupes every message on its own and confirms
    them by id, so a batch that is sent again, or cut differently after a restart, is stored once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = Field(default=1, description="Schema version of the batch envelope.")
    site: Name = Field(description="Site whose alert messages these are.")
    messages: tuple[AlertMessage, ...] = Field(min_length=1, description="Alert messages, oldest first.")


class ConsoleAck(BaseModel):
    """The console's confirmation that it stored these messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_ids: tuple[str, ...] = Field(description="Message ids stored at the console.")

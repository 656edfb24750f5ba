"""JSON Schemas of the wire formats, rendered the same way every time so docs/ can be checked for staleness."""

from __future__ import annotations

import json

from edge.alerts import AlertBatch, AlertMessage, ConsoleAck
from edge.events import schemas


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, for every fact kind, the alert message, the forwarded batch and the console ack."""
    out = {f"{kind}.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
           for kind, schema in sorted(schemas().items())}
    out["alert_message.json"] = json.dumps(AlertMessage.model_json_schema(), indent=2, sort_keys=True) + "\n"
    out["alert_batch.json"] = json.dumps(AlertBatch.model_json_schema(), indent=2, sort_keys=True) + "\n"
    out["console_ack.json"] = json.dumps(ConsoleAck.model_json_schema(), indent=2, sort_keys=True) + "\n"
    return out

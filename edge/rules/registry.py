"""The rules the edge runs, built from settings."""

from __future__ import annotations

from edge.config import RulesSettings
from edge.rules.badge import DeniedBurstRule, TamperRule
from edge.rules.base import Rule
from edge.rules.device import DeviceOfflineRule
from edge.rules.door import DoorForcedRule, DoorHeldRule
from edge.rules.network import NetworkRule
from edge.rules.tailgate import TailgateRule
from edge.rules.visitor import OverstayRule, WatchlistRule


def build_rules(settings: RulesSettings) -> list[Rule]:
    """Every shipped rule, configured."""
    return [DoorForcedRule(settings), DoorHeldRule(settings), DeviceOfflineRule(settings), TamperRule(settings),
            DeniedBurstRule(settings), WatchlistRule(settings), OverstayRule(settings),
            TailgateRule(settings), NetworkRule(settings)]

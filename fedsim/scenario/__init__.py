"""Scenario files: the typed, validated description of one study (``scenarios/*.toml``)."""

from fedsim.scenario.load import apply_overrides, load_scenario, parse_override, scenario_from_dict
from fedsim.scenario.model import Scenario

__all__ = ["Scenario", "apply_overrides", "load_scenario", "parse_override", "scenario_from_dict"]

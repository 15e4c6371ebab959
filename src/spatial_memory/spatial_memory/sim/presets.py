"""Named worlds for the mobile FR3, shared by the recorder (`sim record --world`), the live simulation
(`sim_node`, `sim.launch.py world_preset:=...`) and the benchmarks, so a name means one world everywhere.

Worlds are generated for the robot's planning radius (`PLANNING_RADIUS_M`: the base and the folded arm
scan, plus a margin; `world_tour` checks it against the scan's reach) with 1 m doorways, so the generator
keeps every room reachable. This module loads no MuJoCo, so data tools can name presets cheaply.
"""

from __future__ import annotations

from typing import Any

from spatial_memory.errors import ConfigError
from spatial_memory.sim.worlds import WorldConfig

# WorldConfig fields of each preset, over the generator's defaults.
WORLD_PRESETS: dict[str, dict[str, Any]] = {
    "room": {"width_m": 5.0, "depth_m": 5.0, "num_rooms": 1},
    "house": {"width_m": 10.0, "depth_m": 8.0, "num_rooms": 4},
    "apartment": {"width_m": 15.0, "depth_m": 15.0, "num_rooms": 8, "corridor_width_m": 1.5},
}
DOOR_WIDTH_M = 1.0
PLANNING_RADIUS_M = 0.42  # base (0.3 m) and compact arm scan (0.37 m), plus 5 cm for the controller


def world_preset(name: str, seed: int = 0, **overrides: Any) -> WorldConfig:
    """The WorldConfig of a preset ('room' 5x5 m, 'house' 10x8 m with 4 rooms, 'apartment' 15x15 m with 8
    rooms and a corridor) for a seed; `overrides` replace any WorldConfig field (ConfigError if they
    make it impossible)."""
    if name not in WORLD_PRESETS:
        raise ConfigError(f"unknown world preset {name!r}; known: {sorted(WORLD_PRESETS)}")
    values = {
        "robot_radius_m": PLANNING_RADIUS_M,
        "door_width_m": DOOR_WIDTH_M,
        **WORLD_PRESETS[name],
        **overrides,
    }
    try:
        return WorldConfig(seed=seed, **values)
    except ConfigError as exc:
        raise ConfigError(f"world preset {name!r} with {overrides or 'no overrides'}: {exc}") from exc

"""The motion layer's messages against the real ROS 2 definitions: an occupancy grid survives CDR and comes
back as the same planning grid; unknown cells are obstacles; rotated maps are refused."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_memory.errors import InvalidInputError
from spatial_memory.msgs import conversions as conv
from spatial_memory.ros import navigation_messages as nm
from spatial_memory.sim.bag import jazzy_typestore
from spatial_memory.sim.planning import OccupancyGrid

STORE = jazzy_typestore()
FACTORY = conv.RosbagsFactory(STORE)


def round_trip(msg):
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def grid() -> OccupancyGrid:
    rng = np.random.default_rng(0)
    return OccupancyGrid(rng.random((30, 40)) < 0.2, (-1.5, 2.25), 0.05)


def test_occupancy_grid_round_trips_through_cdr():
    g = grid()
    msg = round_trip(nm.occupancy_grid_message(g, 7_000_000_000, "world", factory=FACTORY))
    assert (msg.header.frame_id, msg.info.width, msg.info.height) == ("world", 40, 30)
    assert msg.info.resolution == pytest.approx(0.05)
    assert set(np.unique(msg.data)) <= {0, 100}
    back = nm.occupancy_grid_from_message(msg)
    assert np.array_equal(back.occupied, g.occupied) and back.origin == pytest.approx(g.origin)
    # row-major, rows along +y: the cell at (ix, iy) is data[iy * width + ix]
    iy, ix = np.argwhere(g.occupied)[0]
    assert msg.data[iy * 40 + ix] == 100


def test_unknown_cells_are_obstacles_and_bad_maps_are_refused():
    msg = nm.occupancy_grid_message(grid(), 0, "map", factory=FACTORY)
    msg.data = np.zeros(1200, np.int8)
    msg.data[5] = -1
    assert nm.occupancy_grid_from_message(msg).occupied.ravel()[5]
    msg.data = np.zeros(10, np.int8)
    with pytest.raises(InvalidInputError, match="carries 10 values"):
        nm.occupancy_grid_from_message(msg)
    rotated = nm.occupancy_grid_message(grid(), 0, "map", factory=FACTORY)
    rotated.info.origin.orientation.z, rotated.info.origin.orientation.w = np.sin(0.2), np.cos(0.2)
    with pytest.raises(InvalidInputError, match="rotated"):
        nm.occupancy_grid_from_message(rotated)


def test_inflating_a_map_keeps_the_radius_from_every_obstacle():
    occ = np.zeros((40, 40), bool)
    occ[20, 20] = True
    inflated = OccupancyGrid(occ, (0.0, 0.0), 0.05).inflated(0.3)
    assert inflated.inflate_m == pytest.approx(0.3)
    assert inflated.occupied[20, 26] and not inflated.occupied[20, 27]  # 6 cells = 0.30 m, 7 = 0.35 m
    assert (
        inflated.occupied.sum() > 100
        and OccupancyGrid(occ, (0.0, 0.0), 0.05).inflated(0.0).occupied.sum() == 1
    )

"""Messages of the motion layer: the occupancy grid (nav_msgs/OccupancyGrid), goals (PoseStamped) and
velocity commands (Twist), built through a `MessageFactory` so tests check them against the real ROS 2
definitions. Pure: no rclpy here.

nav_msgs/OccupancyGrid stores row-major cells, row 0 at `info.origin`, rows along +y: the same layout as
`sim.planning.OccupancyGrid.occupied[iy, ix]`. Values: 100 occupied, 0 free, -1 unknown (read as occupied).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spatial_memory.errors import InvalidInputError
from spatial_memory.geometry import yaw_pose
from spatial_memory.msgs import conversions as conv
from spatial_memory.sim.planning import OccupancyGrid

OCCUPANCY_GRID = "nav_msgs/msg/OccupancyGrid"
OCCUPIED, FREE = 100, 0


def occupancy_grid_message(
    grid: OccupancyGrid, stamp_ns: int, frame_id: str, *, factory: conv.MessageFactory
) -> Any:
    """nav_msgs/OccupancyGrid of `grid` in `frame_id` (its origin is the grid's lower-left corner)."""
    rows, cols = grid.shape
    origin = conv.matrix_to_pose(yaw_pose(grid.origin[0], grid.origin[1], 0.0), factory=factory)
    info = factory.new(
        "nav_msgs/msg/MapMetaData",
        map_load_time=conv.ns_to_stamp(stamp_ns, factory),
        resolution=float(grid.resolution_m),
        width=cols,
        height=rows,
        origin=origin,
    )
    data = np.where(grid.occupied, OCCUPIED, FREE).astype(np.int8).ravel()
    return factory.new(
        OCCUPANCY_GRID, header=conv.make_header(stamp_ns, frame_id, factory), info=info, data=data
    )


def occupancy_grid_from_message(msg: Any) -> OccupancyGrid:
    """A planning grid from nav_msgs/OccupancyGrid: unknown (-1) and any value >= 50 count as occupied.
    A rotated map origin is refused (our planner's grids are axis-aligned)."""
    info = msg.info
    rows, cols = int(info.height), int(info.width)
    data = np.asarray(msg.data, dtype=np.int16)
    if rows < 1 or cols < 1 or data.size != rows * cols:
        raise InvalidInputError(f"occupancy grid of {cols}x{rows} cells carries {data.size} values")
    T = conv.msg_to_matrix(info.origin)  # noqa: N806 - the project's pose naming
    if not np.allclose(T[:2, :2], np.eye(2), atol=1e-6):
        raise InvalidInputError("occupancy grids with a rotated origin are not supported")
    occupied = ((data < 0) | (data >= 50)).reshape(rows, cols)
    return OccupancyGrid(occupied, (float(T[0, 3]), float(T[1, 3])), float(info.resolution))

"""Regenerate docs/images/world_example.png: a generated apartment and a planned tour through all rooms.

python3 scripts/make_world_example.py
"""

import numpy as np

from spatial_memory.sim.planning import plan_path, plan_tour, room_centres
from spatial_memory.sim.worlds import WorldConfig, generate_world, plot_world

world = generate_world(WorldConfig(seed=7, width_m=15.0, depth_m=15.0, num_rooms=8))
grid = world.occupancy()
centres = room_centres(world)
order, left = [0], set(range(1, len(centres)))
while left:  # greedy: next the room with the shortest planned path
    here = centres[order[-1]]
    lengths = {
        j: np.linalg.norm(np.diff(plan_path(grid, here, centres[j]), axis=0), axis=1).sum() for j in left
    }
    order.append(min(lengths, key=lengths.get))
    left.remove(order[-1])
path = plan_tour(grid, centres[order])
seg = np.diff(path, axis=0)
cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
s = np.arange(1.0, cum[-1], 2.0)  # a camera pose every 2 m, looking along the path
k = np.searchsorted(cum, s) - 1
xy = path[k] + ((s - cum[k]) / (cum[k + 1] - cum[k]))[:, None] * seg[k]
poses = np.column_stack([xy, np.arctan2(seg[k, 1], seg[k, 0])])
ax = plot_world(world, path=path, poses=poses)
ax.set_title(
    f"seed 7: 15 x 15 m, {len(world.rooms)} rooms, {len(world.doors)} doorways; "
    f"twin bedrooms {world.twin_rooms}; tour {cum[-1]:.0f} m",
    fontsize=9,
)
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=4, fontsize=8, frameon=False)
ax.figure.savefig("docs/images/world_example.png", dpi=110, bbox_inches="tight")
print(order, len(path), "waypoints", f"{cum[-1]:.1f} m")

"""A contact sheet of an episode: sampled frames of every camera over a top-down plot of the path.

For an episode in a generated world (metadata scene 'world', carrying the World) the top-down plot is the
world's floor plan (walls, doorways, furniture) with the true and the odometry base path, the cameras'
viewing directions every few steps and where each query camera stood (seen and unseen places apart).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from spatial_memory.errors import InvalidInputError
from spatial_memory.sim.dataset import CompactEpisode, EpisodeSource
from spatial_memory.sim.episode import (
    EpisodeMetadata,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# Looking at an episode
# ----------------------------------------------------------------------------------------------------


def _sample_indices(num_steps: int, count: int) -> list[int]:
    """Up to `count` step indices spread evenly over the episode, first and last included."""
    return sorted({int(round(x)) for x in np.linspace(0, num_steps - 1, max(1, min(count, num_steps)))})


def _draw_top_down(
    ax: Any, metadata: EpisodeMetadata, poses: dict[str, np.ndarray], picked: list[int]
) -> None:
    """Camera positions and viewing directions (optical axis projected on the ground), base and odometry."""
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    xy_all = [poses["T_world_base"][:, :2, 3]]
    for k, cam in enumerate(metadata.cameras):
        T = poses[f"{cam.name}.T_world_cam"]
        xy, axis = T[:, :2, 3], T[:, :2, 2]
        colour = colours[k % len(colours)]
        ax.plot(xy[:, 0], xy[:, 1], "-", color=colour, lw=1, alpha=0.6, label=f"{cam.name} path")
        every = max(1, len(T) // 40)
        ax.quiver(
            xy[::every, 0], xy[::every, 1], axis[::every, 0], axis[::every, 1],
            color=colour, angles="xy", scale_units="xy", scale=4.0, width=0.004, alpha=0.8,
        )  # fmt: skip
        if np.ptp(xy, axis=0).max() > 0.01:  # number the sampled frames of a moving camera
            for n, i in enumerate(picked, start=1):
                ax.annotate(str(n), xy[i], color=colour, fontsize=8, fontweight="bold")
        xy_all.append(xy)
    base = poses["T_world_base"][:, :2, 3]
    odom = np.einsum("ij,tjk->tik", metadata.T_world_odom, poses["T_odom_base"])[:, :2, 3]
    ax.plot(base[:, 0], base[:, 1], "kx", ms=6, label="base (ground truth)")
    ax.plot(odom[:, 0], odom[:, 1], "--", color="grey", lw=1, label="base (odometry)")
    xy = np.concatenate(xy_all)
    pad = 0.25 * max(float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1])), 0.5)
    ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
    ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"x in {metadata.world_frame} (m)")
    ax.set_ylabel(f"y in {metadata.world_frame} (m)")
    ax.set_title("top-down: camera positions and viewing directions (ground truth; arrows = optical axis)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)


def query_poses(source: EpisodeSource) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps (Q,), T_world_query (Q, 4, 4), seen (Q,)) of an episode's queries, in step order.

    Compact episodes answer from their arrays; other sources are read step by step (images decoded).
    """
    poses = source.poses()["T_world_base"]
    if isinstance(source, CompactEpisode):
        steps = np.asarray(source.array("query_step"), dtype=np.int64)
        T_base_query = np.asarray(source.array("T_base_query"), dtype=np.float64).reshape(-1, 4, 4)
        seen = np.asarray(source.array("query_seen"), dtype=bool)
    else:
        found = [(i, step.query) for i, step in enumerate(source) if step.query is not None]
        steps = np.array([i for i, _ in found], dtype=np.int64)
        T_base_query = np.array([q.T_base_query for _, q in found], dtype=np.float64).reshape(-1, 4, 4)
        seen = np.array([q.seen for _, q in found], dtype=bool)
    return steps, np.einsum("qij,qjk->qik", poses[steps], T_base_query), seen


def _draw_world_top_down(
    ax: Any, metadata: EpisodeMetadata, poses: dict[str, np.ndarray], picked: list[int], queries: tuple
) -> None:
    """The world's floor plan with the base paths, camera directions, queries and the sampled steps."""
    from spatial_memory.sim.worlds import World, plot_world

    world = World.from_dict(metadata.world["world"], source="the episode's world")
    plot_world(world, ax=ax)
    base = poses["T_world_base"][:, :2, 3]
    odom = np.einsum("ij,tjk->tik", metadata.T_world_odom, poses["T_odom_base"])[:, :2, 3]
    ax.plot(base[:, 0], base[:, 1], "-", color="k", lw=1.4, zorder=7, label="base (ground truth)")
    ax.plot(odom[:, 0], odom[:, 1], "--", color="tab:purple", lw=1.2, zorder=7, label="base (odometry)")
    ax.plot(*base[0], "o", color="#2ca02c", ms=8, mec="k", zorder=9, label="start")
    ax.plot(*base[-1], "s", color="#ffbf00", ms=8, mec="k", zorder=9, label="end")
    every = max(1, len(base) // 60)
    for cam, colour in zip(metadata.cameras, ("tab:blue", "tab:orange", "tab:green"), strict=False):
        T = poses[f"{cam.name}.T_world_cam"][::every]
        axis = T[:, :2, 2] / np.maximum(np.linalg.norm(T[:, :2, 2], axis=1, keepdims=True), 1e-9)
        ax.quiver(
            T[:, 0, 3], T[:, 1, 3], axis[:, 0], axis[:, 1], color=colour, angles="xy", scale_units="xy",
            scale=3.0, width=0.003, alpha=0.85, zorder=8, label=f"{cam.name} (every {every} steps)",
        )  # fmt: skip
    steps, T_world_query, seen = queries
    for mask, marker, colour, name in ((seen, "o", "#2ca02c", "seen"), (~seen, "X", "#d62728", "unseen")):
        if mask.any():
            xy = T_world_query[mask, :2, 3]
            ax.plot(
                xy[:, 0], xy[:, 1], marker, color=colour, ms=7, mec="k", zorder=10, label=f"query ({name})"
            )
    for n, i in enumerate(picked, start=1):
        ax.annotate(str(n), base[i], color="k", fontsize=8, fontweight="bold", zorder=11)
    ax.set_title(
        f"top-down: {len(world.rooms)} rooms, {len(steps)} queries ({int(seen.sum())} seen); "
        "arrows = optical axes",
        fontsize=9,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)


def _is_world_episode(metadata: EpisodeMetadata) -> bool:
    return metadata.scene == "world" and isinstance(metadata.world.get("world"), dict)


def write_overview(source: EpisodeSource, out_png: str | Path, *, frames: int = 6) -> Path:
    """A PNG contact sheet: RGB and depth of every camera at `frames` sampled steps, over a top-down plot.

    The numbers in the plot mark where each sampled column was taken. Written atomically.
    """
    from matplotlib.figure import Figure  # plotting is only needed here; keep it out of the import path

    md = source.metadata
    if len(source) < 1:
        raise InvalidInputError("the episode has no steps to show")
    picked = _sample_indices(len(source), frames)
    steps = [source.step(i) for i in picked]
    rows = 2 * len(md.cameras)
    world = _is_world_episode(md)
    plot_rows = 5 if world else 3
    fig = Figure(figsize=(2.0 * len(picked) + 0.6, 1.6 * rows + 1.7 * plot_rows), layout="constrained")
    grid = fig.add_gridspec(rows + plot_rows, len(picked))
    for r, cam in enumerate(md.cameras):
        depths = np.stack([s.camera(cam.name).depth for s in steps])
        lo, hi = np.nanpercentile(depths, [2, 98]) if np.isfinite(depths).any() else (0.0, 1.0)
        for c, (n, step) in enumerate(zip(range(1, len(steps) + 1), steps, strict=True)):
            frame = step.camera(cam.name)
            ax_rgb, ax_depth = fig.add_subplot(grid[2 * r, c]), fig.add_subplot(grid[2 * r + 1, c])
            ax_rgb.imshow(frame.rgb)
            ax_depth.imshow(frame.depth, cmap="viridis", vmin=lo, vmax=hi)
            ax_rgb.set_title(f"{n}: t={step.stamp_ns / 1e9:.2f} s", fontsize=8)
            for ax in (ax_rgb, ax_depth):
                ax.set_xticks([])
                ax.set_yticks([])
            if c == 0:
                ax_rgb.set_ylabel(f"{cam.name}\nRGB", fontsize=8)
                ax_depth.set_ylabel(f"depth\n{lo:.1f}-{hi:.1f} m", fontsize=8)
    if world:
        _draw_world_top_down(fig.add_subplot(grid[rows:, :]), md, source.poses(), picked, query_poses(source))
    else:
        _draw_top_down(fig.add_subplot(grid[rows:, :]), md, source.poses(), picked)
    fig.suptitle(f"{md.scene} episode, seed {md.seed}: {len(source)} steps at {md.rate_hz:g} Hz", fontsize=10)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.partial-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, out_png)
    finally:
        tmp.unlink(missing_ok=True)
    return out_png

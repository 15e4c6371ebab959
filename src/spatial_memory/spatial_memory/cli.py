"""`spatial-memory` command line: wiring only; the work is done by the library.

Known errors (the `SpatialMemoryError` family and missing files) are reported in one line with exit
code 1; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from spatial_memory.errors import SpatialMemoryError

log = logging.getLogger("spatial_memory.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spatial-memory", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the stationary FR3 demo in the MuJoCo kitchen (no ROS needed)")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    demo.add_argument("--duration", type=float, default=60.0, help="simulated seconds (default 60)")
    demo.add_argument("--seed", type=int, default=0, help="scene seed")
    demo.add_argument("--resolution", default="320x240", help="camera images, WxH (default 320x240)")
    demo.add_argument(
        "--params",
        type=Path,
        default=None,
        help="ROS parameter file to take the spatial context settings from "
        "(default: the package's config/robot.yaml)",
    )
    _add_sim_parsers(sub)
    _add_dataset_parsers(sub)
    return parser


WORLDS = (
    "tabletop",
    "room",
    "house",
    "apartment",
)  # `--world`: the tabletop scene or a generated-world preset


def _add_sim_parsers(sub: argparse._SubParsersAction) -> None:
    """`sim record`, `sim view` and `sim world`: recorded episodes (ROS 2 bag and compact arrays), worlds."""
    sim = sub.add_parser("sim", help="record simulated episodes and look at them")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    record = sim_sub.add_parser(
        "record",
        help="record an episode (the tabletop FR3, or the mobile FR3 exploring a generated world) as a "
        "ROS 2 bag (MCAP) and/or compact training arrays",
    )
    record.add_argument(
        "--out", type=Path, required=True, help="recording folder (gets bag/ and/or compact/)"
    )
    record.add_argument(
        "--world",
        choices=WORLDS,
        default="tabletop",
        help="tabletop (default): the stationary FR3 at the kitchen table; room (5x5 m), house (10x8 m, "
        "4 rooms), apartment (15x15 m, 8 rooms and a corridor): the mobile FR3 touring a generated world",
    )
    record.add_argument("--seed", type=int, default=0, help="scene or world seed")
    record.add_argument("--steps", type=int, default=300, help="number of steps (default 300)")
    record.add_argument(
        "--resolution", default=None, help="camera images, WxH (default 128x96 tabletop, 128x128 worlds)"
    )
    record.add_argument(
        "--rate", type=float, default=None, help="steps per simulated second (default 15 tabletop, 5 worlds)"
    )
    record.add_argument(
        "--format",
        choices=("bag", "npz", "compact", "both"),
        default="both",
        help="bag: ROS 2 bag; npz/compact: a folder of memory-mappable .npy arrays; both (default)",
    )
    record.add_argument(
        "--query-every",
        "--queries-every",
        dest="query_every",
        type=int,
        default=None,
        help="a query every N steps; 0 = none (default 10 tabletop; worlds: the query sampler's default)",
    )
    record.add_argument(
        "--depth-dtype", choices=("float32", "float16"), default="float32", help="compact depth arrays"
    )
    view = sim_sub.add_parser("view", help="contact sheet of an episode's frames and a top-down camera plot")
    view.add_argument("episode", type=Path, help="recording folder, bag folder or compact folder")
    view.add_argument("--out", type=Path, default=None, help="PNG to write (default: EPISODE/overview.png)")
    view.add_argument("--frames", type=int, default=6, help="sampled steps per camera (default 6)")
    world = sim_sub.add_parser(
        "world", help="generate a world preset: its JSON, or a floor plan with the start of its tour (PNG)"
    )
    world.add_argument("--out", type=Path, required=True, help="world.json or world.png")
    world.add_argument("--world", choices=WORLDS[1:], default="house", help="preset (default house)")
    world.add_argument("--seed", type=int, default=0, help="world seed")
    world.add_argument(
        "--behaviours", type=int, default=30, help="tour behaviours to plan for the PNG (default 30)"
    )


def _add_dataset_parsers(sub: argparse._SubParsersAction) -> None:
    """`dataset build`: record training and held-out validation worlds for the memory."""
    dataset = sub.add_parser(
        "dataset", help="build datasets of world episodes to train and evaluate the memory"
    )
    dataset_sub = dataset.add_subparsers(dest="dataset_command", required=True)
    build = dataset_sub.add_parser(
        "build",
        help="record one compact episode per world seed (resumable: episodes already there are skipped)",
    )
    build.add_argument(
        "--out", type=Path, required=True, help="dataset folder (gets dataset.json, train/, val/)"
    )
    build.add_argument("--preset", choices=WORLDS[1:], default="house", help="world preset (default house)")
    build.add_argument(
        "--train-seeds", nargs="*", default=[], help="training world seeds, e.g. 0-39 or 0-3,7"
    )
    build.add_argument(
        "--val-seeds", nargs="*", default=[], help="held-out validation world seeds, e.g. 1000-1007"
    )
    build.add_argument("--steps", type=int, default=200, help="steps per episode (default 200)")
    build.add_argument("--resolution", default="64x64", help="camera images, WxH (default 64x64)")
    build.add_argument("--rate", type=float, default=5.0, help="steps per simulated second (default 5)")
    build.add_argument("--query-every", type=int, default=5, help="a query every N steps (default 5)")
    build.add_argument(
        "--depth-dtype",
        choices=("float32", "float16"),
        default="float16",
        help="depth arrays (default float16)",
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bar")


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise SpatialMemoryError(f"--resolution must look like 320x240, got {text!r}") from exc
    return w, h


def _run_demo(args: argparse.Namespace) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from spatial_memory.config import load_config
    from spatial_memory.pipeline import StationaryDemoConfig, StationaryPipeline
    from spatial_memory.resources import share_path
    from spatial_memory.ros.node_configs import SpatialContextNodeConfig

    width, height = _resolution(args.resolution)
    # The same parameter file as the ROS graph: the spatial context and the camera mount come from it.
    params = args.params or share_path("config/robot.yaml")
    node = load_config(SpatialContextNodeConfig, params, "spatial_context_node")
    base = StationaryDemoConfig()
    config = dataclasses.replace(
        base,
        duration_s=args.duration,
        scene=dataclasses.replace(base.scene, seed=args.seed, width=width, height=height),
        camera=node.camera,
        context=node.context,
    )
    log.info("spatial context settings from %s", params)
    pipeline = StationaryPipeline(config)
    try:
        result = pipeline.run(args.out)
    finally:
        pipeline.close()
    print(
        f"demo finished in {result.wall_time_s:.1f} s: {result.frames} frames, "
        f"{len(result.keyframe_ids)} keyframes"
    )
    for name, path in result.files.items():
        print(f"  {name:10s} {path}")
    print(f"  {'summary':10s} {result.out_dir / 'summary.md'}")


def _run_sim_record(args: argparse.Namespace) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from spatial_memory.sim.recorder import FORMATS, record_tabletop_episode
    from spatial_memory.sim.world_episode import record_world_episode

    tabletop = args.world == "tabletop"
    width, height = _resolution(args.resolution or ("128x96" if tabletop else "128x128"))
    common = {"seed": args.seed, "width": width, "height": height, "formats": FORMATS[args.format]}
    common |= {"depth_dtype": args.depth_dtype}
    if tabletop:
        every = 10 if args.query_every is None else args.query_every
        rate = 15.0 if args.rate is None else args.rate
        result = record_tabletop_episode(args.out, args.steps, rate_hz=rate, query_every=every, **common)
    else:
        rate = 5.0 if args.rate is None else args.rate
        result = record_world_episode(
            args.out, args.steps, world=args.world, rate_hz=rate, queries_every=args.query_every, **common
        )
    print(f"recorded {result.steps} steps ({result.queries} queries) in {result.wall_time_s:.1f} s")
    for fmt, path in result.files.items():
        print(f"  {fmt:8s} {path}")


def _run_sim_world(args: argparse.Namespace) -> None:
    from spatial_memory.sim.presets import world_preset
    from spatial_memory.sim.world_tour import preview_paths
    from spatial_memory.sim.worlds import generate_world, plot_world

    suffix = args.out.suffix.lower()
    if suffix not in (".json", ".png"):
        raise SpatialMemoryError(f"--out must end in .json or .png, got {args.out}")
    if args.behaviours < 1:
        raise SpatialMemoryError(f"--behaviours must be at least 1, got {args.behaviours}")
    world = generate_world(world_preset(args.world, args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        world.save(args.out)
    else:
        import numpy as np

        paths = preview_paths(world, seed=args.seed, behaviours=args.behaviours)
        ax = plot_world(world, path=np.vstack(paths) if paths else None)
        ax.set_title(
            f"{args.world}, seed {args.seed}: {len(world.rooms)} rooms, {len(world.doors)} doorways; "
            f"the tour's first {args.behaviours} behaviours",
            fontsize=9,
        )
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=3, fontsize=8, frameon=False)
        ax.figure.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}")


def _run_sim_view(args: argparse.Namespace) -> None:
    from spatial_memory.sim.dataset import open_episode
    from spatial_memory.sim.episode_view import write_overview

    if args.frames < 1:
        raise SpatialMemoryError(f"--frames must be at least 1, got {args.frames}")
    source = open_episode(args.episode)
    try:
        path = write_overview(source, args.out or args.episode / "overview.png", frames=args.frames)
    finally:
        source.close()
    print(f"wrote {path}")


def _run_dataset_build(args: argparse.Namespace) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from spatial_memory.memory.data import DatasetSpec, build_dataset, parse_seeds

    width, height = _resolution(args.resolution)
    spec = DatasetSpec(
        preset=args.preset,
        train_seeds=parse_seeds(args.train_seeds),
        val_seeds=parse_seeds(args.val_seeds),
        steps=args.steps,
        width=width,
        height=height,
        rate_hz=args.rate,
        queries_every=args.query_every,
        depth_dtype=args.depth_dtype,
    )
    index = build_dataset(spec, args.out, progress=not args.no_progress)
    for split in ("train", "val"):
        entries = index.entries(split)
        queries, seen = sum(e.queries for e in entries), sum(e.seen_queries for e in entries)
        print(f"{split}: {len(entries)} episodes, {queries} queries ({seen} seen)")
    print(f"wrote {args.out / 'dataset.json'}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL (under MuJoCo) chats at INFO
    try:
        if args.command == "demo":
            _run_demo(args)
        elif args.command == "sim" and args.sim_command == "record":
            _run_sim_record(args)
        elif args.command == "sim" and args.sim_command == "view":
            _run_sim_view(args)
        elif args.command == "sim" and args.sim_command == "world":
            _run_sim_world(args)
        elif args.command == "dataset" and args.dataset_command == "build":
            _run_dataset_build(args)
    except (SpatialMemoryError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

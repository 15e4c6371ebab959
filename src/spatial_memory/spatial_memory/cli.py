"""`spatial-memory` command line: wiring only; the work is done by the library.

Known errors (the `SpatialMemoryError` family, missing files, and a path that is a file, a folder or not
writable) are reported in one line with exit code 2, as argparse reports a usage error (`-v` adds the
traceback); anything else is a bug and shows its traceback (exit code 1). Outputs and inputs are checked
before the work starts, so a mistake costs no work. An output folder that is not empty is refused unless
`--overwrite`, and is then replaced whole (`atomic.replaced_dir`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

from spatial_memory.errors import SpatialMemoryError

log = logging.getLogger("spatial_memory.cli")

USER_ERROR_EXIT = 2  # an ordinary mistake: the same code as argparse's usage errors
OVERWRITE_HELP = "replace a non-empty --out whole (its old content goes once the run succeeded)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spatial-memory", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run the stationary FR3 demo in the MuJoCo kitchen, or with --world the mobile FR3 touring a "
        "house with the memory (no ROS needed)",
    )
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (new or empty)")
    demo.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    demo.add_argument("--duration", type=float, default=60.0, help="simulated seconds (default 60)")
    demo.add_argument("--seed", type=int, default=None, help="scene / world seed (default 0; mobile: 1000)")
    demo.add_argument(
        "--world",
        choices=("room", "house", "apartment"),
        default=None,
        help="mobile demo: tour this world preset, feed the memory, then ask it where pictures of places "
        "it saw were taken (settings from config/sim.yaml)",
    )
    demo.add_argument(
        "--task",
        choices=("go-to-picture",),
        default=None,
        help="go-to-picture: tour a house with the live camera, be shown a picture of a place seen, go "
        "there (policy, memory, planner); a GIF of it (settings from config/sim.yaml)",
    )
    demo.add_argument("--steps", type=int, default=200, help="mobile demo steps at 5 Hz (default 200)")
    demo.add_argument("--resolution", default="320x240", help="camera images, WxH (default 320x240)")
    demo.add_argument(
        "--params",
        type=Path,
        default=None,
        help="ROS parameter file to take the spatial context settings from "
        "(default: the package's config/robot.yaml; with --world config/sim.yaml)",
    )
    _add_sim_parsers(sub)
    _add_dataset_parsers(sub)
    _add_eval_parsers(sub)
    _add_vo_parser(sub)
    _add_train_parser(sub)
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
        "--out", type=Path, required=True, help="recording folder, new or empty (gets bag/ and/or compact/)"
    )
    record.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
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


def _add_eval_parsers(sub: argparse._SubParsersAction) -> None:
    """`eval mem-rpe`: Mem-RPE of memory models on held-out worlds, one table, the same queries."""
    ev = sub.add_parser("eval", help="evaluate memory models")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    rpe = ev_sub.add_parser(
        "mem-rpe",
        help="Mem-RPE of every model on the same queries of world episodes of length T (JSON + table)",
    )
    rpe.add_argument("--seeds", nargs="+", required=True, help="world seeds, e.g. 1000 1001 or 1000-1007")
    rpe.add_argument("--length", type=int, required=True, help="episode length T in steps")
    rpe.add_argument(
        "--models",
        nargs="*",
        default=[],
        help="checkpoint files and/or 'keyframes' (default: every checkpoint in models/); "
        "'here' (the floor) is always included",
    )
    rpe.add_argument(
        "--encoder",
        type=Path,
        default=None,
        help="checkpoint whose encoder 'keyframes' reads through (default: an untrained encoder)",
    )
    rpe.add_argument(
        "--data",
        type=Path,
        nargs="*",
        default=[],
        help="dataset folders to take the episodes from when they match seeds, length and resolution",
    )
    rpe.add_argument("--preset", choices=WORLDS[1:], default="house", help="world preset (default house)")
    rpe.add_argument("--resolution", default="64x64", help="camera images, WxH (default 64x64)")
    rpe.add_argument(
        "--cache",
        type=Path,
        default=Path("outputs/eval_episodes"),
        help="where episodes not found in --data are recorded (default outputs/eval_episodes)",
    )
    rpe.add_argument("--out", type=Path, required=True, help="JSON file to write (and the table as .md)")
    rpe.add_argument("--no-progress", action="store_true", help="no progress bars")

    live = ev_sub.add_parser(
        "mem-rpe-live",
        help="the memory as users run it (live sim, sim_node's camera, memory_node's feeding), per motion "
        "scenario, beside the offline benchmark on the same worlds",
    )
    live.add_argument("--seeds", nargs="+", required=True, help="world seeds, e.g. 1000-1003")
    live.add_argument("--length", type=int, required=True, help="memory steps T per run")
    live.add_argument(
        "--scenarios", nargs="+", default=["all"], help="tour teleop standstill spin revisit kidnap, or all"
    )
    live.add_argument("--preset", choices=WORLDS[1:], default="house", help="world preset (default house)")
    live.add_argument(
        "--params", type=Path, default=None, help="parameter file (default the installed config/sim.yaml)"
    )
    live.add_argument("--checkpoint", default="", help="memory checkpoint (default: the params file's)")
    live.add_argument(
        "--backends",
        nargs="+",
        default=["kinaema"],
        help="backends to ask (one running memory serves them all): kinaema, keyframes, refined",
    )
    live.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model config field without weights, for ablations (recall_write=clock); values are YAML",
    )
    live.add_argument(
        "--data", type=Path, nargs="*", default=[], help="dataset folders holding the offline episodes"
    )
    live.add_argument("--no-progress", action="store_true", help="no progress bars or per-run lines")
    live.add_argument(
        "--cache",
        type=Path,
        default=Path("outputs/eval_episodes"),
        help="where offline episodes not found in --data are recorded (default outputs/eval_episodes)",
    )
    live.add_argument("--no-offline", action="store_true", help="live runs only")
    live.add_argument("--out", type=Path, required=True, help="JSON file to write (and the table as .md)")

    nav = ev_sub.add_parser(
        "mem-nav",
        help="go to where a picture was taken: tour T steps, then seen and never-seen pictures, per method "
        "(none, gru, keyframes, kinaema, refined, oracle), in the live simulation",
    )
    nav.add_argument("--seeds", nargs="+", required=True, help="world seeds, e.g. 2000-2001 (test worlds)")
    nav.add_argument("--explore-steps", type=int, default=200, help="memory steps T of the tour (200)")
    nav.add_argument("--preset", choices=WORLDS[1:], default="house", help="world preset (default house)")
    nav.add_argument(
        "--methods", nargs="+", default=["none", "gru", "keyframes", "kinaema", "refined", "oracle"]
    )
    nav.add_argument("--goals", type=int, default=4, help="pictures of seen places per world (4)")
    nav.add_argument("--unseen", type=int, default=1, help="pictures of never-seen places per world (1)")
    nav.add_argument("--budget", type=float, default=60.0, help="sim seconds per picture (60)")
    nav.add_argument(
        "--params", type=Path, default=None, help="parameter file (default the installed config/sim.yaml)"
    )
    nav.add_argument("--checkpoint", default="", help="Kinaema checkpoint (default: the params file's)")
    nav.add_argument("--out", type=Path, required=True, help="JSON file to write (and the table as .md)")
    nav.add_argument("--no-progress", action="store_true", help="no progress bar")

    cal = ev_sub.add_parser(
        "calibrate-sigma",
        help="scale a Kinaema checkpoint's sigma to cover a share of the errors on validation worlds",
    )
    cal.add_argument("--checkpoint", type=Path, required=True, help="Kinaema checkpoint to calibrate")
    cal.add_argument("--seeds", nargs="+", required=True, help="VALIDATION world seeds (never test ones)")
    cal.add_argument(
        "--preset",
        nargs="+",
        choices=("room", "house", "apartment"),
        default=["house"],
        help="world preset(s), each with the seeds (default house); several: one factor over all answers",
    )
    cal.add_argument("--length", type=int, default=200, help="episode length T (default 200)")
    cal.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model config field without weights to write with it (recall_sharpness=8); values are YAML",
    )
    cal.add_argument("--coverage", type=float, default=0.68, help="share the 1-sigma should cover (0.68)")
    cal.add_argument("--data", type=Path, nargs="*", default=[], help="dataset folders holding the episodes")
    cal.add_argument("--cache", type=Path, default=Path("outputs/eval_episodes"))
    cal.add_argument("--out", type=Path, required=True, help="the calibrated checkpoint to write")


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    """`train`: fit a memory model and its encoder on a dataset (TBPTT, resumable)."""
    train = sub.add_parser(
        "train",
        help="train a memory model with its encoder on a dataset's train worlds, validating on its val "
        "worlds (rerun the same command to resume)",
    )
    train.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="dataset folder(s) (spatial-memory dataset build); several train on all their episodes",
    )
    train.add_argument(
        "--model",
        choices=("kinaema", "gru", "ema", "truncated", "full"),
        default="kinaema",
        help="memory model",
    )
    train.add_argument(
        "--out", type=Path, required=True, help="run folder (last.pt, best.pt, log.jsonl, loss.png)"
    )
    train.add_argument("--steps", type=int, default=None, help="optimiser steps (default 2000)")
    train.add_argument("--batch", type=int, default=None, help="episodes per batch (default 8)")
    train.add_argument("--window", type=int, default=None, help="TBPTT window in steps (default 25)")
    train.add_argument(
        "--seed", type=int, default=None, help="seed of weights, data order and masks (default 0)"
    )
    train.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    train.add_argument("--device", default=None, help="torch device: cpu (default), cuda, cuda:1, ...")
    train.add_argument(
        "--freeze-encoder", action="store_true", help="keep the image encoder fixed (faster, usually worse)"
    )
    train.add_argument(
        "--init", type=Path, default=None, metavar="CHECKPOINT",
        help="start from this checkpoint's model and encoder weights (fine-tuning; default: fresh weights)",
    )  # fmt: skip
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any TrainConfig field (lr=3e-4, eval_every=100, encoder.widths=[16,32,64]) or model config "
        "field (model.slots=32); values are YAML",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")


def _key_value(item: str) -> tuple[str, Any]:
    """One `--set KEY=VALUE`: the value read as YAML, except that a plain word Python reads as a number is
    that number (YAML 1.1 reads `3e-4` as a string; `lr=3e-4` means 3e-4)."""
    import yaml

    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise SpatialMemoryError(f"--set takes KEY=VALUE, got {item!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpatialMemoryError(f"--set {item!r}: {exc}") from exc
    if isinstance(value, str) and value == text.strip():
        with contextlib.suppress(ValueError):
            value = float(value)
    return key.strip(), value


def _train_config(args: argparse.Namespace):  # noqa: ANN202 - the import is deferred
    from spatial_memory.memory.train import TrainConfig

    fields: dict = {"data": os.pathsep.join(str(folder) for folder in args.data), "model": args.model}
    flags = {"steps": args.steps, "batch_size": args.batch, "window": args.window}
    flags |= {"seed": args.seed, "threads": args.threads, "device": args.device}
    fields |= {k: v for k, v in flags.items() if v is not None}
    if args.freeze_encoder:
        fields["freeze_encoder"] = True
    if args.init is not None:
        fields["init_from"] = str(args.init)
    overrides: dict = {}
    for item in args.set:
        key, value = _key_value(item)
        if key.startswith("model."):
            overrides[key.removeprefix("model.")] = value
        else:
            fields[key] = value
    if overrides:
        fields["model_overrides"] = overrides
    return TrainConfig.from_dict(fields)


def _run_train(args: argparse.Namespace) -> None:
    from spatial_memory.memory.train import train

    result = train(_train_config(args), args.out, progress=not args.no_progress)
    rpe = result.val.get("mem_rpe", {})
    print(
        f"trained to step {result.step} in {result.wall_s / 60:.1f} min; best val query loss "
        f"{result.best_val_loss:.3f}; within (2 m, 90 deg) {rpe.get('within_2m_90deg_pct')} %"
    )
    for name in ("best.pt", "last.pt", "log.jsonl", "loss.png"):
        print(f"  {result.out_dir / name}")


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise SpatialMemoryError(f"--resolution must look like 320x240, got {text!r}") from exc
    if w < 1 or h < 1:
        raise SpatialMemoryError(f"--resolution needs positive sizes, got {text!r}")
    return w, h


def _check_demo_args(args: argparse.Namespace) -> None:
    """The demo's output folder and numbers, before any scene is built (a traceback came after the work)."""
    import math

    from spatial_memory.atomic import check_replaceable_dir

    check_replaceable_dir(args.out, args.overwrite, "--out")
    if not (math.isfinite(args.duration) and args.duration > 0):
        raise SpatialMemoryError(f"--duration must be a positive number of seconds, got {args.duration}")
    if args.steps < 1:
        raise SpatialMemoryError(f"--steps must be at least 1, got {args.steps}")
    _resolution(args.resolution)


def _run_demo(args: argparse.Namespace) -> None:
    """The demo chosen by --task / --world, writing into a new, empty or (--overwrite) replaced --out."""
    from spatial_memory.atomic import replaced_dir

    os.environ.setdefault("MUJOCO_GL", "egl")
    _check_demo_args(args)
    with replaced_dir(args.out, args.overwrite, "--out"):
        if args.task == "go-to-picture":
            _run_go_to_picture_demo(args)
        elif args.world is not None:
            _run_mobile_demo(args)
        else:
            _run_stationary_demo(args)


def _run_stationary_demo(args: argparse.Namespace) -> None:
    from spatial_memory.config import load_config
    from spatial_memory.node_configs import SpatialContextNodeConfig
    from spatial_memory.pipeline import StationaryDemoConfig, StationaryPipeline
    from spatial_memory.resources import share_path

    width, height = _resolution(args.resolution)
    # The same parameter file as the ROS graph: the spatial context and the camera mount come from it.
    params = args.params or share_path("config/robot.yaml")
    node = load_config(SpatialContextNodeConfig, params, "spatial_context_node")
    base = StationaryDemoConfig()
    config = dataclasses.replace(
        base,
        duration_s=args.duration,
        scene=dataclasses.replace(base.scene, seed=args.seed or 0, width=width, height=height),
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


def _run_go_to_picture_demo(args: argparse.Namespace) -> None:
    from spatial_memory.config import load_config
    from spatial_memory.go_to_picture_demo import GoToPictureDemo, GoToPictureDemoConfig
    from spatial_memory.node_configs import MemoryNodeConfig, PolicyNodeConfig, SpatialContextNodeConfig
    from spatial_memory.resources import share_path

    params = args.params or share_path("config/sim.yaml")
    memory = load_config(MemoryNodeConfig, params, "memory_node")
    base = GoToPictureDemoConfig()
    nav = dataclasses.replace(
        base.nav,
        preset=args.world or base.nav.preset,
        seed=base.nav.seed if args.seed is None else args.seed,
        # --steps 200 is the mobile demo's default: keep the go-to-picture tour's own length then
        explore_steps=base.nav.explore_steps if args.steps == 200 else args.steps,
        engine=dataclasses.replace(memory.engine, threads=memory.engine.threads or 1),
        refine=memory.refine,
        update_rate_hz=memory.update_rate_hz,
        policy=load_config(PolicyNodeConfig, params, "policy_node").scripted,
    )
    context = load_config(SpatialContextNodeConfig, params, "spatial_context_node").context
    demo = GoToPictureDemo(dataclasses.replace(base, nav=nav, context=context))
    try:
        result = demo.run(args.out)
    finally:
        demo.close()
    r = result.result
    print(
        f"go to a picture: {r.status} ({r.reason}); head camera {r.final_distance_m:.2f} m from the "
        f"picture's camera after {r.time_s:.0f} s; {'success' if r.success else 'failure'} "
        f"({result.wall_time_s:.0f} s wall, tour of {result.tour_steps} memory steps)"
    )
    for name, path in result.files.items():
        print(f"  {name:10s} {path}")


def _run_mobile_demo(args: argparse.Namespace) -> None:
    from spatial_memory.config import load_config
    from spatial_memory.node_configs import MemoryNodeConfig, SpatialContextNodeConfig
    from spatial_memory.pipeline import MobileDemoConfig, MobilePipeline
    from spatial_memory.resources import share_path

    # The simulation's parameter file, as for the ROS graph: spatial context and memory engine settings.
    params = args.params or share_path("config/sim.yaml")
    context = load_config(SpatialContextNodeConfig, params, "spatial_context_node").context
    engine = load_config(MemoryNodeConfig, params, "memory_node").engine
    base = MobileDemoConfig()
    config = dataclasses.replace(
        base,
        world=args.world,
        seed=base.seed if args.seed is None else args.seed,
        steps=args.steps,
        memory=dataclasses.replace(engine, threads=engine.threads or 1),
        context=context,
    )
    log.info("spatial context and memory settings from %s", params)
    pipeline = MobilePipeline(config)
    try:
        result = pipeline.run(args.out)
    finally:
        pipeline.close()
    print(
        f"mobile demo finished in {result.wall_time_s:.1f} s: {result.steps} steps, "
        f"{len(result.keyframe_ids)} keyframes, {len(result.asked)} pictures asked about"
    )
    for a in result.asked:
        print(
            f"  {a.label}: memory {a.answer[0]:+.2f} m, {a.answer[1]:+.2f} m; truth {a.truth[0]:+.2f} m, "
            f"{a.truth[1]:+.2f} m; error {a.position_error_m:.2f} m, {a.heading_error_deg:.0f} deg"
        )
    for name, path in result.files.items():
        print(f"  {name:10s} {path}")
    print(f"  {'summary':10s} {result.out_dir / 'mobile_summary.md'}")


def _run_sim_record(args: argparse.Namespace) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from spatial_memory.atomic import check_replaceable_dir, replaced_dir
    from spatial_memory.sim.recorder import FORMATS, record_tabletop_episode
    from spatial_memory.sim.world_episode import record_world_episode

    check_replaceable_dir(args.out, args.overwrite, "recording folder")  # before any scene is built
    tabletop = args.world == "tabletop"
    width, height = _resolution(args.resolution or ("128x96" if tabletop else "128x128"))
    common = {"seed": args.seed, "width": width, "height": height, "formats": FORMATS[args.format]}
    common |= {"depth_dtype": args.depth_dtype}
    with replaced_dir(args.out, args.overwrite, "recording folder"):
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


def _run_eval_mem_rpe(args: argparse.Namespace) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from spatial_memory.atomic import check_output_file
    from spatial_memory.memory.data import parse_seeds
    from spatial_memory.memory.evaluate import (
        control_table,
        episodes_for,
        head_camera_offset,
        load_models,
        mem_rpe_report,
        write_report,
    )

    width, height = _resolution(args.resolution)
    if width != height:
        raise SpatialMemoryError(f"the encoder reads square images, got --resolution {args.resolution}")
    seeds = parse_seeds(args.seeds)
    check_output_file(args.out, "--out")
    _check_checkpoints(args.models, args.encoder)  # before recording episodes, which takes minutes
    progress = not args.no_progress
    episodes = episodes_for(seeds, args.length, args.preset, (width, height), args.data, args.cache, progress)
    models, origin = load_models(args.models, width, head_camera_offset(episodes[0]), args.encoder)
    report, _ = mem_rpe_report(models, episodes, seeds, args.length, origin, progress)
    out = write_report(report, args.out)
    q = report["queries"]
    print(f"Mem-RPE at T = {args.length}, seeds {list(seeds)}: {q['total']} queries ({q['seen']} seen)")
    print(report["table"])
    print("picture control (each query also asked with another query's picture):")
    print(control_table(report))
    print(f"wrote {out} and {out.with_suffix('.md')}")


def _check_checkpoints(models: list[str], encoder: Path | None) -> None:
    """Each checkpoint named by `--models` and `--encoder` exists and loads (checksum, finite weights)."""
    from spatial_memory.memory.evaluate import HERE, KEYFRAMES
    from spatial_memory.memory.registry import load_checkpoint

    named = [(f"--models {m!r}", m) for m in models if m not in (HERE, KEYFRAMES)]
    for option, source in [*named, *([("--encoder", encoder)] if encoder is not None else [])]:
        if not Path(source).is_file():
            raise SpatialMemoryError(
                f"{option}: no checkpoint file {source} (models: checkpoint files, {KEYFRAMES!r}, {HERE!r})"
            )
        load_checkpoint(source)


def _run_eval_mem_rpe_live(args: argparse.Namespace) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from spatial_memory.config import load_config
    from spatial_memory.eval.live_mem_rpe import compare_offline_live
    from spatial_memory.memory.data import parse_seeds
    from spatial_memory.node_configs import MemoryNodeConfig, SimNodeConfig
    from spatial_memory.resources import share_path

    params = args.params or share_path("config/sim.yaml")
    node = load_config(MemoryNodeConfig, params, "memory_node")
    sim = load_config(SimNodeConfig, params, "sim_node").sim  # camera, odometry noise, arm: as sim_node runs
    engine = node.engine
    if args.checkpoint:
        engine = dataclasses.replace(engine, checkpoint=args.checkpoint)
    overrides = {}
    for item in args.overrides:
        key, value = _key_value(item)
        overrides[key] = value
    report = compare_offline_live(
        engine=dataclasses.replace(engine, threads=engine.threads or 1),
        update_rate_hz=node.update_rate_hz,
        seeds=parse_seeds(args.seeds),
        length=args.length,
        scenarios=args.scenarios,
        preset=args.preset,
        backends=args.backends,
        model_overrides=overrides,
        data=args.data,
        cache=args.cache,
        offline=not args.no_offline,
        out=args.out,
        progress=not args.no_progress,
        refine=node.refine,
        sim_config=sim,
    )
    print(report["table"])
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


def _run_eval_mem_nav(args: argparse.Namespace) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from spatial_memory.config import load_config
    from spatial_memory.eval.mem_nav import MemNavConfig, run_mem_nav
    from spatial_memory.memory.data import parse_seeds
    from spatial_memory.node_configs import MemoryNodeConfig, PolicyNodeConfig, SimNodeConfig
    from spatial_memory.resources import share_path

    params = args.params or share_path("config/sim.yaml")
    memory = load_config(MemoryNodeConfig, params, "memory_node")
    policy = load_config(PolicyNodeConfig, params, "policy_node")
    sim = load_config(SimNodeConfig, params, "sim_node").sim  # camera, odometry noise, arm: as sim_node runs
    engine = memory.engine
    if args.checkpoint:
        engine = dataclasses.replace(engine, checkpoint=args.checkpoint)
    base = MemNavConfig(
        preset=args.preset,
        explore_steps=args.explore_steps,
        seen_goals=args.goals,
        unseen_goals=args.unseen,
        budget_s=args.budget,
        update_rate_hz=memory.update_rate_hz,
        engine=dataclasses.replace(engine, threads=engine.threads or 1),
        refine=memory.refine,
        sim=sim,
        policy=policy.scripted,
    )
    report = run_mem_nav(base, parse_seeds(args.seeds), args.methods, args.out, not args.no_progress)
    print(report["table"])
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


def _run_eval_calibrate_sigma(args: argparse.Namespace) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from spatial_memory.memory.data import parse_seeds
    from spatial_memory.memory.evaluate import calibrate_sigma, episodes_for
    from spatial_memory.memory.registry import build_model, load_checkpoint, save_checkpoint

    readout = dict(_key_value(item) for item in args.overrides)
    ckpt = load_checkpoint(args.checkpoint, expect_model="kinaema", model_overrides=readout)
    model, config = ckpt.model, ckpt.model.config
    size = ckpt.encoder.config.image_size
    seeds = parse_seeds(args.seeds)
    episodes = [
        episode
        for preset in args.preset
        for episode in episodes_for(seeds, args.length, preset, (size, size), args.data, args.cache, True)
    ]
    fit = calibrate_sigma(model, ckpt.encoder, episodes, args.length, args.coverage)
    scale = config.sigma_scale * fit["factor"]
    calibrated = build_model("kinaema", dataclasses.replace(config, sigma_scale=scale))
    calibrated.load_state_dict(ckpt.model.state_dict())
    where = {"seeds": list(seeds), "presets": list(args.preset), "length": args.length, "set": readout}
    extra = {**ckpt.extra, "sigma_calibration": {**fit, **where}}
    save_checkpoint(args.out, calibrated, ckpt.encoder, extra)
    print(
        f"sigma x {fit['factor']:.3f} (sigma_scale {scale:.3f}): the 1-sigma covered "
        f"{100 * fit['coverage_before']:.1f} % of {fit['answers']} errors on {'/'.join(args.preset)} worlds "
        f"{list(seeds)}, now "
        f"{100 * args.coverage:.0f} %; wrote {args.out}"
    )


def _add_vo_parser(sub: argparse._SubParsersAction) -> None:
    vo = sub.add_parser(
        "vo", help="patch visual odometry on a TUM-format RGB-D folder; writes a TUM trajectory"
    )
    vo.add_argument(
        "--tum", type=Path, required=True, help="TUM RGB-D folder (rgb.txt, depth.txt, rgb/, depth/)"
    )
    vo.add_argument(
        "--depth", action="store_true", help="RGB-D mode (metric); without it, monocular (no scale)"
    )
    vo.add_argument("--stride", type=int, default=1, help="use every Nth colour frame (2: 30 Hz -> 15 Hz)")
    vo.add_argument("--resolution", default=None, help="work at WxH (images resized, intrinsics scaled)")
    vo.add_argument(
        "--intrinsics",
        default=None,
        metavar="FX,FY,CX,CY|freiburg1|freiburg2|freiburg3|FILE",
        help="the camera (pixels at the images' own size), a TUM sensor, or a calibration file (ROS "
        "camera_info YAML, or a 'fx fy cx cy' line); default: the freiburg1/2/3 named in the folder's name",
    )
    vo.add_argument(
        "--out", type=Path, required=True, help="trajectory file (timestamp tx ty tz qx qy qz qw)"
    )
    vo.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_vo(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from spatial_memory.atomic import check_output_file
    from spatial_memory.vo.patch_vo import PatchVO
    from spatial_memory.vo.tum import (
        check_images,
        load_depth,
        load_rgb,
        parse_intrinsics,
        read_tum,
        scaled_K,
        write_tum,
    )

    check_output_file(args.out, "--out")  # before the work: a folder or read-only place lost it all
    if args.stride < 1:
        raise SpatialMemoryError(f"--stride must be at least 1, got {args.stride}")
    K = parse_intrinsics(args.intrinsics) if args.intrinsics is not None else None
    seq = read_tum(args.tum, stride=args.stride, intrinsics=K)  # every listed colour image is there
    if args.depth:
        check_images(seq, args.tum / "depth.txt", depth=True)
    size = _resolution(args.resolution) if args.resolution else (seq.width, seq.height)
    vo = PatchVO(scaled_K(seq.K, (seq.width, seq.height), size), *size)
    lost = 0
    for i in tqdm(range(len(seq)), desc="vo", unit="frame", disable=args.no_progress):
        depth = load_depth(seq, i, size) if args.depth else None
        lost += vo.track(load_rgb(seq, i, size), float(seq.stamps[i]), depth=depth) is None
    stamps, poses = vo.trajectory()
    write_tum(args.out, stamps, poses)
    mode = "RGB-D (metric)" if args.depth else "monocular (scale-free)"
    print(f"{len(stamps)} frames, {mode}, {lost} with tracking lost; wrote {args.out}")


# Mistakes a user can make (bad values, paths, permissions), reported in one line; the OS errors are a
# last resort behind the checks each command makes before its work.
_USER_ERRORS = (
    SpatialMemoryError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
)


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
        elif args.command == "train":
            _run_train(args)
        elif args.command == "eval" and args.eval_command == "mem-rpe":
            _run_eval_mem_rpe(args)
        elif args.command == "eval" and args.eval_command == "calibrate-sigma":
            _run_eval_calibrate_sigma(args)
        elif args.command == "eval" and args.eval_command == "mem-rpe-live":
            _run_eval_mem_rpe_live(args)
        elif args.command == "eval" and args.eval_command == "mem-nav":
            _run_eval_mem_nav(args)
        elif args.command == "vo":
            _run_vo(args)
    except _USER_ERRORS as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        more = " (-v for the details)" if len(lines) > 1 and not args.verbose else ""
        log.error("%s%s", str(exc).strip() if args.verbose else lines[0], more, exc_info=args.verbose)
        return USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())

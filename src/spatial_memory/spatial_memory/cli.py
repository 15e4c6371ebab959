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
    return parser


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL (under MuJoCo) chats at INFO
    try:
        if args.command == "demo":
            _run_demo(args)
    except (SpatialMemoryError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

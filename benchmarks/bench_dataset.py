"""Episode read speed: the ROS 2 bag (MCAP, via rosbags) next to the compact .npy arrays, in a training loop.

Records one tabletop episode (default 200 steps, both cameras at 128x128, RGB + float32 depth) in both
formats, then times on one pinned core: opening, a full sequential read (as StepRecords, and as the
stacked training arrays), and random access to single steps (as a StepRecord, and as one training
sample: head-camera RGB, depth and pose). "warm" runs read from the page cache; "cold" runs first evict
the episode's files from it (posix_fadvise DONTNEED), which is what a first epoch over a large dataset
sees. Writes `benchmarks/results/dataset.json` and `dataset.md` with the machine it ran on.

    python3 benchmarks/bench_dataset.py                 # MUJOCO_GL=egl is set if unset
    python3 benchmarks/bench_dataset.py --synthetic     # random images, no renderer
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
from machine import machine

from spatial_memory.sim.dataset import BagReader, CompactEpisode, write_bag, write_compact
from spatial_memory.sim.episode import HEAD_CAMERA, synthetic_episode

RESULTS = Path(__file__).resolve().parent / "results"


def evict(folder: Path) -> None:
    """Drop a folder's files from the page cache (clean pages only; no root needed)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(fn: Callable[[], object], repeats: int, before: Callable[[], None] | None = None) -> dict:
    """Median, min and max seconds of `fn` over `repeats` runs (`before` runs untimed ahead of each)."""
    runs = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs), "repeats": repeats}


def make_episode(args: argparse.Namespace):
    """(metadata, steps, description) of the episode to store."""
    if args.synthetic:
        metadata, steps = synthetic_episode(args.steps, args.size, args.size, seed=0, query_every=10)
        return metadata, steps, "synthetic (random pixels)"
    os.environ.setdefault("MUJOCO_GL", "egl")
    from spatial_memory.sim.recorder import TabletopEpisodeConfig, TabletopEpisodeScene
    from spatial_memory.sim.tabletop import TabletopConfig

    config = TabletopEpisodeConfig(scene=TabletopConfig(seed=0, width=args.size, height=args.size))
    with TabletopEpisodeScene(config, args.steps) as scene:
        steps = [scene.step(t) for t in range(args.steps)]
        return scene.metadata, steps, "tabletop (MuJoCo renders)"


def all_steps_bag(path: Path) -> list:
    with BagReader(path) as reader:
        return list(reader)


def all_steps_compact(path: Path) -> list:
    with CompactEpisode(path) as episode:
        return list(episode)


def training_arrays_bag(path: Path) -> dict[str, np.ndarray]:
    """What a training loop wants, stacked, from the bag: both cameras' RGB, depth and poses."""
    out: dict[str, list[np.ndarray]] = {}
    with BagReader(path) as reader:
        for step in reader:
            for cam in step.cameras:
                out.setdefault(f"{cam.name}.rgb", []).append(cam.rgb)
                out.setdefault(f"{cam.name}.depth", []).append(cam.depth)
                out.setdefault(f"{cam.name}.T_world_cam", []).append(cam.T_world_cam)
    return {k: np.stack(v) for k, v in out.items()}


def training_arrays_compact(path: Path) -> dict[str, np.ndarray]:
    """The same arrays from the compact format: each .npy read into memory."""
    with CompactEpisode(path) as ep:
        names = [
            n for n in ep.array_names if n.split(".")[-1] in ("rgb", "depth", "T_world_cam") and "." in n
        ]
        return {n: np.array(ep.array(n)) for n in names}


def run(args: argparse.Namespace) -> dict:
    info = machine(rosbags=version("rosbags"), numpy=np.__version__)
    metadata, steps, kind = make_episode(args)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(steps), args.random).tolist()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        bag = write_bag(tmp / "bag", metadata, steps)
        write_bag_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        compact = write_compact(tmp / "compact", metadata, steps)
        write_compact_s = time.perf_counter() - t0
        size = {
            name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            for name, p in (("bag", bag), ("compact", compact))
        }

        reader, episode = BagReader(bag), CompactEpisode(compact)
        _ = reader.stamps_ns  # the bag's step index, built once per open reader

        def open_bag() -> None:
            with BagReader(bag) as r:
                _ = r.stamps_ns

        def one_sample_compact(i: int) -> tuple:
            return (
                np.array(episode.array("camera.rgb")[i]),
                np.array(episode.array("camera.depth")[i]),
                np.array(episode.array("camera.T_world_cam")[i]),
            )

        def one_sample_bag(i: int) -> tuple:
            cam = reader.step(i).camera(HEAD_CAMERA)
            return cam.rgb, cam.depth, cam.T_world_cam

        def cold(folder: Path) -> Callable[[], None]:
            return lambda: evict(folder)

        n = len(picks)
        cases = [  # (case, bag reader, compact reader, before each bag run, before each compact run)
            ("open (bag: + step index)", open_bag, lambda: CompactEpisode(compact), None, None),
            (
                "sequential, all steps -> StepRecords, warm",
                lambda: all_steps_bag(bag),
                lambda: all_steps_compact(compact),
                None,
                None,
            ),
            (
                "sequential, all steps -> training arrays, warm",
                lambda: training_arrays_bag(bag),
                lambda: training_arrays_compact(compact),
                None,
                None,
            ),
            (
                "sequential, all steps -> training arrays, cold",
                lambda: training_arrays_bag(bag),
                lambda: training_arrays_compact(compact),
                cold(bag),
                cold(compact),
            ),
            (
                f"random step -> StepRecord (x{n}), warm",
                lambda: [reader.step(i) for i in picks],
                lambda: [episode.step(i) for i in picks],
                None,
                None,
            ),
            (
                f"random step -> rgb+depth+pose (x{n}), warm",
                lambda: [one_sample_bag(i) for i in picks],
                lambda: [one_sample_compact(i) for i in picks],
                None,
                None,
            ),
        ]
        rows = []
        for case, bag_fn, compact_fn, bag_before, compact_before in cases:
            rows.append((case, "bag", timed(bag_fn, args.repeats, bag_before)))
            rows.append((case, "compact", timed(compact_fn, args.repeats, compact_before)))
        reader.close()
        episode.close()
    results = []
    for case, fmt, t in rows:
        per = len(picks) if case.startswith("random") else len(steps) if case.startswith("sequential") else 1
        results.append(
            {"case": case, "format": fmt, "per_item_ms": 1e3 * t["median_s"] / per, **t, "items": per}
        )
    return {
        "machine": info,
        "episode": {
            "kind": kind,
            "steps": len(steps),
            "cameras": [c.name for c in metadata.cameras],
            "size": f"{args.size}x{args.size}",
            "depth": "float32",
            "queries": sum(s.query is not None for s in steps),
        },
        "write_s": {"bag": write_bag_s, "compact": write_compact_s},
        "bytes": size,
        "results": results,
    }


def table(report: dict) -> str:
    """Markdown table: one row per case with both formats side by side and the speed-up of compact."""
    by_case: dict[str, dict[str, dict]] = {}
    for r in report["results"]:
        by_case.setdefault(r["case"], {})[r["format"]] = r
    lines = [
        "| case | bag ms/item | compact ms/item | compact faster by | bag total s | compact total s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case, f in by_case.items():
        b, c = f["bag"], f["compact"]
        lines.append(
            f"| {case} | {b['per_item_ms']:.3f} | {c['per_item_ms']:.3f} | "
            f"{b['median_s'] / c['median_s']:.0f}x | {b['median_s']:.3f} | {c['median_s']:.3f} |"
        )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    m, e = report["machine"], report["episode"]
    mb = {k: v / 2**20 for k, v in report["bytes"].items()}
    return "\n".join(
        [
            "# Episode formats: read speed of the ROS 2 bag vs the compact arrays",
            "",
            "`python3 benchmarks/bench_dataset.py`: one pinned core, median of repeats; per item = per step",
            "(sequential rows, divided over the episode) or per random access.",
            "",
            f"- machine: {m['cpu']}, {m['cores']} cores (run pinned to {m['pinned_to']}),",
            f"  {m['platform']}",
            f"- python {m['python']}, rosbags {m['rosbags']}, numpy {m['numpy']}; "
            f"run {m['date_utc']}, load average {m['load_average_at_start']} at the start",
            f"- episode: {e['kind']}, {e['steps']} steps, cameras {e['cameras']} at {e['size']}, RGB + "
            f"{e['depth']} depth, {e['queries']} queries",
            f"- on disk: bag {mb['bag']:.1f} MiB (MCAP, uncompressed), compact {mb['compact']:.1f} MiB; "
            f"write: bag {report['write_s']['bag']:.2f} s, compact {report['write_s']['compact']:.2f} s",
            "",
            table(report),
            "",
            "Training loops should read the compact arrays: a sample is a slice of a memory-mapped",
            "array, while the bag must find the step's chunk, deserialise CDR and convert every message.",
            "The bag is the exchange format (Foxglove, `ros2 bag play`, replay into the ROS graph).",
            "",
            "- `open`: ms per open; the bag row includes the step index (one pass over the ground-truth",
            "  pose topic) that random access needs.",
            "- `StepRecords`: full, validated records (every pose checked rigid, K checked) of all cameras;",
            "  `training arrays`: RGB, depth and poses of both cameras stacked, read the natural way of each",
            "  format (bag: decode every step; compact: read each .npy into memory).",
            "- `rgb+depth+pose`: one training sample of the head camera; compact slices the memory maps.",
            "- `warm`: files in the page cache (just written); `cold`: the episode's files are evicted from",
            "  the page cache (posix_fadvise DONTNEED) before each repeat.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=128, help="square image size of both cameras")
    parser.add_argument("--random", type=int, default=200, help="random single-step reads per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="runs per case; the median is reported")
    parser.add_argument("--synthetic", action="store_true", help="random images instead of the tabletop")
    parser.add_argument(
        "--tmp", type=Path, default=None, help="where to write the episodes (default: $TMPDIR)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for dataset.json and dataset.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    report = run(args)
    print(table(report))
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "dataset.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "dataset.md").write_text(markdown(report))
        print(f"wrote {args.out / 'dataset.json'} and {args.out / 'dataset.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

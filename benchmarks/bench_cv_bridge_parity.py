"""Image conversion speed: our `msgs/conversions.py` next to cv_bridge's `CvBridge`, on the same messages.

A 640x480 rgb8 camera image and a 640x480 32FC1 depth image, both directions: rclpy `sensor_msgs/Image` ->
numpy array (what a subscriber does) and array -> message (what a publisher does). Pinned to one CPU core;
each number is the median over repeats of the mean time per call, the cases taking turns within each
repeat. Before timing, the outputs of the two are compared byte for byte (the parity that
test/ros/test_cv_bridge_parity.py checks in depth).
Needs ROS 2 with cv_bridge; writes `benchmarks/results/cv_bridge_parity.json` and `.md`.

    source /work/ros_extra/ENV.sh    # or any ROS 2 environment that has cv_bridge (see the README)
    python3 benchmarks/bench_cv_bridge_parity.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine

from spatial_memory.msgs import conversions as conv

RESULTS = Path(__file__).resolve().parent / "results"
HEIGHT, WIDTH = 480, 640


def images() -> dict[str, np.ndarray]:
    """The two test images: random colour, and depth in metres with some NaN (no return) pixels."""
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.2, 8.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth[rng.random((HEIGHT, WIDTH)) < 0.05] = np.nan
    return {"rgb8": rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), "32FC1": depth}


def time_round_robin(fns: list[Callable[[], Any]], calls: int, repeats: int) -> list[dict]:
    """Per callable: median (and min/max) over `repeats` runs of the mean microseconds per call.

    The callables take turns within each repeat, so a load that comes and goes on the shared machine
    slows every case alike instead of whichever ran at the time.
    """
    for fn in fns:
        fn()  # warm-up
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            runs[k].append((time.perf_counter() - start) / calls * 1e6)
    return [{"median_us": statistics.median(r), "min_us": min(r), "max_us": max(r)} for r in runs]


def same_message(a: Any, b: Any) -> bool:
    """Equal in every field a subscriber reads (header aside)."""
    fields = ("height", "width", "encoding", "is_bigendian", "step")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and bytes(a.data) == bytes(b.data)


def cases(bridge: Any, encoding: str, image: np.ndarray) -> tuple[list[tuple], dict]:
    """(case, implementation, callable) rows for one encoding, and whether the two sides' outputs agree."""
    factory = conv.RclpyFactory()
    msg = conv.numpy_to_image(image, encoding, factory=factory)
    ours_out, theirs_out = conv.image_to_numpy(msg), bridge.imgmsg_to_cv2(msg)
    buffer = np.frombuffer(msg.data, np.uint8)
    parity = {
        "decode_identical": ours_out.dtype == theirs_out.dtype and ours_out.tobytes() == theirs_out.tobytes(),
        "encode_identical": same_message(msg, bridge.cv2_to_imgmsg(image, encoding=encoding)),
        "ours_decode_is_a_view_of_the_message": bool(np.shares_memory(ours_out, buffer)),
        "cv_bridge_decode_is_a_view_of_the_message": bool(np.shares_memory(theirs_out, buffer)),
    }
    image_class = type(msg)
    size = f"{WIDTH}x{HEIGHT} {encoding}"
    rows = [
        (f"{size}: message -> array", "ours: image_to_numpy", lambda: conv.image_to_numpy(msg)),
        (f"{size}: message -> array", "cv_bridge: imgmsg_to_cv2", lambda: bridge.imgmsg_to_cv2(msg)),
        (
            f"{size}: array -> message",
            "ours: numpy_to_image",
            lambda: conv.numpy_to_image(image, encoding, factory=factory),
        ),
        (
            f"{size}: array -> message",
            "cv_bridge: cv2_to_imgmsg",
            lambda: bridge.cv2_to_imgmsg(image, encoding=encoding),
        ),
        (
            f"{size}: array -> message",
            "(part of ours) rclpy Image(data=...) alone",
            lambda: image_class(data=msg.data),
        ),
    ]
    return rows, parity


def run(calls: int, repeats: int) -> dict:
    """Time every case, taking turns, on the same messages and arrays; check the outputs agree first."""
    import cv2
    import cv_bridge  # imported here so that --help works without ROS

    info = machine(numpy=np.__version__, opencv_python=cv2.__version__)  # load average before the runs
    bridge = cv_bridge.CvBridge()
    rows, parity = [], {}
    for encoding, image in images().items():
        encoding_rows, parity[encoding] = cases(bridge, encoding, image)
        rows += encoding_rows
    timings = time_round_robin([fn for _, _, fn in rows], calls, repeats)
    results = [
        {"case": case, "implementation": implementation, **timing}
        for (case, implementation, _), timing in zip(rows, timings, strict=True)
    ]
    return {"machine": info, "calls": calls, "repeats": repeats, "parity": parity, "results": results}


def table(report: dict) -> str:
    """Markdown table: every case, with cv_bridge's time over ours on cv_bridge's rows."""
    lines = [
        "| case | implementation | median us | min us | max us | vs ours |",
        "|---|---|---:|---:|---:|---:|",
    ]
    ours: dict[str, float] = {}
    for r in report["results"]:
        if r["implementation"].startswith("ours"):
            ours[r["case"]] = r["median_us"]
            ratio = ""
        else:
            ratio = f"{r['median_us'] / ours[r['case']]:.2f}x"
        lines.append(
            f"| {r['case']} | {r['implementation']} | {r['median_us']:.1f} | {r['min_us']:.1f} "
            f"| {r['max_us']:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def views(report: dict, side: str) -> str:
    """Whether `side`'s decoded images share the message's memory, per encoding, in words."""
    key = f"{side}_decode_is_a_view_of_the_message"
    return ", ".join(f"{enc} {'a view' if p[key] else 'a copy'}" for enc, p in report["parity"].items())


def markdown(report: dict) -> str:
    """The results page: how it was run, the machine, the table and the byte-for-byte check."""
    m = report["machine"]
    parity = ", ".join(
        f"{enc}: decode {'identical' if p['decode_identical'] else 'DIFFERENT'}, "
        f"encode {'identical' if p['encode_identical'] else 'DIFFERENT'}"
        for enc, p in report["parity"].items()
    )
    return "\n".join(
        [
            "# Image conversions: ours next to cv_bridge",
            "",
            "`source /work/ros_extra/ENV.sh && python3 benchmarks/bench_cv_bridge_parity.py`: one core,",
            f"median of {report['repeats']} repeats of {report['calls']} calls (the cases take turns in each",
            "repeat); microseconds per call.",
            "Messages are rclpy `sensor_msgs/Image` (data an `array.array`, as a subscriber receives it);",
            "cv_bridge decodes with `desired_encoding='passthrough'` (rgb8 is then RGB, as ours returns).",
            "",
            f"- machine: {m['cpu']}, {m['cores']} cores (run pinned to {m['pinned_to']}),",
            f"  {m['platform']}",
            f"- python {m['python']}, numpy {m['numpy']}, opencv-python {m['opencv_python']} "
            "(cv_bridge's `cv2`);",
            f"  run {m['date_utc']}, load average {m['load_average_at_start']} at the start",
            "- cv_bridge from vision_opencv (rolling branch) built on Debian's OpenCV 4.6 and Boost.Python",
            "  1.74, on a from-source ROS 2 Jazzy",
            "",
            table(report),
            "",
            f"Outputs compared byte for byte before timing: {parity}.",
            "",
            "Message -> array: cv_bridge returns a view of the message's buffer (no copy: "
            f"{views(report, 'cv_bridge')}), ours validates the message (encoding, step, data size) and",
            f"copies the pixels once into a fresh array that owns its memory ({views(report, 'ours')}).",
            "Array -> message: both copy the pixels to bytes and into the message's `array.array`; ours",
            "passes that array to rclpy's generated `Image(...)` constructor, which copies it once more",
            "(the row 'rclpy Image(data=...) alone'), where cv_bridge fills the field after construction.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=9, help="runs per case; the median is reported")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for cv_bridge_parity.json/.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    report = run(args.calls, args.repeats)
    print(table(report))
    print(f"\nparity: {report['parity']}")
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cv_bridge_parity.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "cv_bridge_parity.md").write_text(markdown(report))
        print(f"wrote {args.out / 'cv_bridge_parity.json'} and {args.out / 'cv_bridge_parity.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

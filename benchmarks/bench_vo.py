"""Visual odometry on real data: accuracy (evo ATE, RPE per second) and speed of every registered VO method.

Data: the TUM RGB-D fr3/teddy clip, frames 0-99 (Sturm et al., IROS 2012), read from ../shared/data beside
the checkout (never copied into the repository). The colour frames before the first ground-truth sample (less
the 0.02 s association tolerance) are dropped: frames 0-3. Every method runs on the same frames at stride 1
(30 Hz) and stride 2 (15 Hz), at 640x480 and at 320x240 (images resized, K scaled). Speed is the wall time of
the `track` calls only (images and depth are loaded before the clock starts), as frames per second.
Accuracy is evo's ATE (translation RMSE) after an SE(3) alignment for RGB-D methods and a Sim(3) alignment
for monocular ones, and evo's RPE over 1 s steps.
A "zero motion" row (the camera never moves) puts the numbers on a scale: it is the ATE of knowing nothing.

More methods are added to `METHODS`: a name mapped to a `VOMethod(factory, mode)`, where
`factory(K, mode, (width, height))` returns a tracker with `track(image_rgb, stamp, depth=None) -> T_world_cam
| None`, and mode is "rgbd" (depth given, SE(3) alignment) or "mono" (no depth, Sim(3) alignment). A tracker
that also has `trajectory()` (ours: poses refined by its windowed bundle adjustment after they were first
reported) gets a second row, "(refined)", scored on that final trajectory; its first row is scored on the
pose each `track` call returned, as a robot would have used it. Writes `benchmarks/results/vo_tum.json`
and `vo_tum.md` with the machine, and `vo_tum.png`: the aligned trajectories over the ground truth.

    python3 benchmarks/bench_vo.py
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import scipy
from machine import machine

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from spatial_memory.vo import baselines
from spatial_memory.vo.evaluation import aligned_positions, ate_rmse, rpe_per_second
from spatial_memory.vo.patch_vo import PatchVO
from spatial_memory.vo.tum import TumSequence, load_depth, load_rgb, read_tum, scaled_K

log = logging.getLogger("bench_vo")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATA = REPO.parent / "shared" / "data" / "rgbd_dataset_freiburg3_teddy_frames000-099"
STRIDES = (1, 2)
RESOLUTIONS = ((640, 480), (320, 240))
ZERO = "zero motion"
ALIGN = {"rgbd": "se3", "mono": "sim3"}
MAX_DIFF = 0.02  # seconds: estimate and ground-truth stamps paired within this (evo association)
PLOTTED = {  # method -> line style in vo_tum.png (the others are in the tables only)
    "patch VO (ours)": {"color": "tab:red", "lw": 2.0},
    "patch VO mono (ours)": {"color": "tab:orange", "lw": 1.5, "ls": "--"},
    "cv2 RGB-D odometry": {"color": "tab:blue", "lw": 1.2},
    "KLT+depth+PnP": {"color": "tab:green", "lw": 1.2},
    "ORB+depth+PnP": {"color": "tab:purple", "lw": 1.0},
    "mono ORB+essential": {"color": "tab:gray", "lw": 1.0, "ls": ":"},
}
PLOT_PANELS = (((640, 480), 1), ((320, 240), 2))  # (resolution, stride) per panel
Track = tuple[np.ndarray, np.ndarray]  # (stamps, T_world_cam) as each track call returned them


@dataclass(frozen=True)
class VOMethod:
    """A registered VO method: `factory(K, mode, (w, h))` builds a fresh tracker; mode is "rgbd" or "mono"."""

    factory: Callable[[np.ndarray, str, tuple[int, int]], object]
    mode: str = "rgbd"


METHODS: dict[str, VOMethod] = {
    "ORB+depth+PnP": VOMethod(lambda K, mode, wh: baselines.OrbPnpVO(K), "rgbd"),
    "KLT+depth+PnP": VOMethod(lambda K, mode, wh: baselines.KltPnpVO(K), "rgbd"),
    "mono ORB+essential": VOMethod(lambda K, mode, wh: baselines.MonoEssentialVO(K), "mono"),
    "patch VO (ours)": VOMethod(lambda K, mode, wh: PatchVO(K, *wh), "rgbd"),
    "patch VO mono (ours)": VOMethod(lambda K, mode, wh: PatchVO(K, *wh), "mono"),
}
if baselines.available_rgbd_odometry():
    METHODS["cv2 RGB-D odometry"] = VOMethod(lambda K, mode, wh: baselines.RgbdOdometryVO(K, "rgb"), "rgbd")
    METHODS["cv2 RGB-D odometry +ICP"] = VOMethod(
        lambda K, mode, wh: baselines.RgbdOdometryVO(K, "rgbd"), "rgbd"
    )


@dataclass(frozen=True)
class Clip:
    """The frames of one condition, loaded: images, depth, stamps, K, and the ground truth."""

    seq: TumSequence
    stride: int
    resolution: tuple[int, int]
    K: np.ndarray
    images: tuple[np.ndarray, ...]
    depths: tuple[np.ndarray, ...]

    @property
    def hz(self) -> float:
        return float(1.0 / np.median(np.diff(self.seq.stamps)))


def first_tracked_frame(root: Path, max_diff: float = MAX_DIFF) -> int:
    """Index of the first colour frame with a ground-truth sample within max_diff (frame 4 on the clip)."""
    seq = read_tum(root)
    if seq.gt_stamps is None or len(seq.gt_stamps) == 0:
        raise SystemExit(f"{root} has no groundtruth.txt: nothing to evaluate against")
    return int(np.searchsorted(seq.stamps, seq.gt_stamps.min() - max_diff))


def load_clip(root: Path, start: int, stride: int, resolution: tuple[int, int]) -> Clip:
    seq = read_tum(root, stride=stride, start=start)
    K = scaled_K(seq.K, (seq.width, seq.height), resolution)
    images = tuple(load_rgb(seq, i, resolution) for i in range(len(seq)))
    depths = tuple(load_depth(seq, i, resolution) for i in range(len(seq)))
    return Clip(seq, stride, tuple(resolution), K, images, depths)


def run_method(name: str, method: VOMethod, clip: Clip) -> tuple[list[dict], Track]:
    """Track every frame of the clip with a fresh tracker; time the track calls; score with evo (and the
    refined trajectory too, for trackers that refine). Also returns the online track."""
    tracker = method.factory(clip.K, method.mode, clip.resolution)
    stamps, poses, seconds = [], [], 0.0
    for image, depth, stamp in zip(clip.images, clip.depths, clip.seq.stamps, strict=True):
        t0 = time.perf_counter()
        pose = tracker.track(image, float(stamp), depth if method.mode == "rgbd" else None)
        seconds += time.perf_counter() - t0
        if pose is not None:  # a method may give no pose while it initialises
            stamps.append(stamp)
            poses.append(pose)
    row = score(name, method.mode, clip, np.array(stamps), np.array(poses))
    row["fps"] = len(clip.images) / seconds
    row["ms_per_frame"] = 1e3 * seconds / len(clip.images)
    row["lost"] = int(getattr(tracker, "lost", 0))
    rows = [row]
    if hasattr(tracker, "trajectory"):
        refined = score(f"{name} (refined)", method.mode, clip, *tracker.trajectory())
        rows.append({**refined, "fps": row["fps"], "ms_per_frame": row["ms_per_frame"], "lost": row["lost"]})
    log.info(
        "%-24s %3dx%-3d %4.1f Hz: ATE %.4f m, RPE %.4f m/s, %6.1f fps, lost %d",
        name,
        *clip.resolution,
        clip.hz,
        row["ate"]["rmse"],
        row["rpe"]["rmse"],
        row["fps"],
        row["lost"],
    )
    return rows, (np.array(stamps), np.array(poses))


def score(name: str, mode: str, clip: Clip, stamps: np.ndarray, poses: np.ndarray) -> dict:
    """ATE (SE(3) or Sim(3) aligned by mode) and RPE per second of one estimated trajectory."""
    gt = (clip.seq.gt_stamps, clip.seq.gt_poses)
    return {
        "method": name,
        "mode": mode,
        "align": ALIGN[mode],
        "stride": clip.stride,
        "hz": round(clip.hz, 1),
        "resolution": list(clip.resolution),
        "frames": len(clip.images),
        "posed": len(stamps),
        "ate": ate_rmse(stamps, poses, *gt, align=ALIGN[mode]),
        "rpe": rpe_per_second(stamps, poses, *gt, align="sim3" if mode == "mono" else "none"),
    }


def zero_motion(clip: Clip) -> dict:
    """The camera never moves: the error of knowing nothing (fps not applicable)."""
    stamps = clip.seq.stamps
    row = score(ZERO, "rgbd", clip, stamps, np.tile(np.eye(4), (len(stamps), 1, 1)))
    return {**row, "fps": None, "ms_per_frame": None, "lost": 0}


def run(root: Path, names: list[str]) -> tuple[dict, dict, dict]:
    """Every method on every clip: (report, online tracks by (method, resolution, stride), ground truth)."""
    info = machine(opencv=cv2.__version__, numpy=np.__version__, scipy=scipy.__version__, evo=_evo_version())
    info["opencv_threads"] = cv2.getNumThreads()
    start = first_tracked_frame(root)
    rows, tracks = [], {}
    for resolution in RESOLUTIONS:
        for stride in STRIDES:
            clip = load_clip(root, start, stride, resolution)
            for name in names:
                method_rows, tracks[(name, resolution, stride)] = run_method(name, METHODS[name], clip)
                rows.extend(method_rows)
            rows.append(zero_motion(clip))
    gt = (clip.seq.gt_stamps, clip.seq.gt_poses)
    return {"machine": info, "data": str(root), "first_frame": start, "rows": rows}, tracks, gt


def plot(tracks: dict, gt: tuple[np.ndarray, np.ndarray], path: Path) -> None:
    """Per panel (a resolution and rate): the online trajectories aligned as scored (SE(3); Sim(3) for
    monocular) over the ground truth, seen along the axis the camera moved least; below, each one's
    position error over the clip (log scale)."""
    fig, axes = plt.subplots(2, len(PLOT_PANELS), figsize=(6.5 * len(PLOT_PANELS), 9), squeeze=False)
    for col, (resolution, stride) in enumerate(PLOT_PANELS):
        top, bottom = axes[0, col], axes[1, col]
        plane = start = None
        for name, style in PLOTTED.items():
            if (name, resolution, stride) not in tracks:
                continue
            stamps, poses = tracks[(name, resolution, stride)]
            times, ref, est = aligned_positions(
                stamps, poses, *gt, align=ALIGN[METHODS[name].mode], max_diff=MAX_DIFF
            )
            if plane is None:
                plane = np.sort(np.argsort(np.ptp(ref, axis=0))[1:])  # the two axes of largest extent
                start = times[0]
                top.plot(*ref[:, plane].T, color="black", lw=2.5, label="ground truth (motion capture)")
            error = np.linalg.norm(est - ref, axis=1)
            rmse = float(np.sqrt(np.mean(error**2)))
            top.plot(*est[:, plane].T, label=f"{name}: ATE {rmse:.4f} m", **style)
            bottom.plot(times - start, error, **style)
        title = f"TUM fr3/teddy, {resolution[0]}x{resolution[1]} at {30 / stride:.0f} Hz"
        top.set_title(title)
        if plane is not None:
            top.set_xlabel(f"{'xyz'[plane[0]]} (m)")
            top.set_ylabel(f"{'xyz'[plane[1]]} (m)")
        top.set_aspect("equal", adjustable="datalim")
        top.legend(fontsize=8, loc="upper left")
        bottom.set_yscale("log")
        bottom.set_xlabel("time from the first tracked frame (s)")
        bottom.set_ylabel("position error after alignment (m)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _evo_version() -> str:
    from importlib.metadata import version

    return version("evo")


def _find(rows: list[dict], method: str, stride: int, resolution: tuple[int, int]) -> dict | None:
    for r in rows:
        if r["method"] == method and r["stride"] == stride and tuple(r["resolution"]) == resolution:
            return r
    return None


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(report: dict) -> list[str]:
    """One line per method: ATE at 30 / 15 Hz at both resolutions, fps at both resolutions (30 Hz)."""
    big, small = RESOLUTIONS
    lines = [
        f"| method | align | ATE m 30 Hz | ATE m 15 Hz | ATE m 30 Hz {small[0]}x{small[1]} | "
        f"ATE m 15 Hz {small[0]}x{small[1]} | RPE m/s 30 Hz | fps {big[0]}x{big[1]} | "
        f"fps {small[0]}x{small[1]} | lost 30 Hz |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["method"] for r in report["rows"]):
        cells = [_find(report["rows"], name, s, res) for res in (big, small) for s in STRIDES]
        if any(c is None for c in cells):
            continue
        b30, b15, s30, s15 = cells
        lines.append(
            f"| {name} | {b30['align']} | {b30['ate']['rmse']:.3f} | {b15['ate']['rmse']:.3f} | "
            f"{s30['ate']['rmse']:.3f} | {s15['ate']['rmse']:.3f} | {b30['rpe']['rmse']:.3f} | "
            f"{_fmt(b30['fps'], 0)} | {_fmt(s30['fps'], 0)} | {b30['lost']} |"
        )
    return lines


def full_table(report: dict) -> list[str]:
    lines = [
        "| method | resolution | rate | frames | ATE rmse m | ATE median m | ATE max m | Sim(3) scale | "
        "RPE/s rmse m | RPE pairs | fps | ms/frame | lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        a, p = r["ate"], r["rpe"]
        scale = f"{a['scale']:.3f}" if r["align"] == "sim3" else "-"
        lines.append(
            f"| {r['method']} | {r['resolution'][0]}x{r['resolution'][1]} | {r['hz']:g} Hz | {r['frames']} | "
            f"{a['rmse']:.4f} | {a['median']:.4f} | {a['max']:.4f} | {scale} | {p['rmse']:.4f} | {p['n']} | "
            f"{_fmt(r['fps'], 1)} | {_fmt(r['ms_per_frame'], 2)} | {r['lost']} |"
        )
    return lines


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Visual odometry on TUM RGB-D fr3/teddy (frames 0-99)",
        "",
        "`python3 benchmarks/bench_vo.py`: frame-to-frame VO on real handheld RGB-D data, scored with evo "
        "(ATE: translation RMSE after SE(3) alignment for RGB-D methods, Sim(3) for monocular; RPE: "
        "translation error over consecutive 1 s steps). Speed: wall time of the `track` calls only, images "
        f"already loaded. Colour frames without a ground-truth sample within {MAX_DIFF} s dropped (the clip "
        f"starts at frame {report['first_frame']}). 15 Hz = every second frame.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}",
        f"- python {m['python']}, opencv {m['opencv']} ({m['opencv_threads']} threads), numpy {m['numpy']}, "
        f"evo {m['evo']}; run {m['date_utc']}, load average {m['load_average_at_start']} at the start",
        "- data: TUM RGB-D `rgbd_dataset_freiburg3_teddy`, frames 0-99 (CC BY 4.0; J. Sturm, N. Engelhard, "
        'F. Endres, W. Burgard, D. Cremers, "A Benchmark for the Evaluation of RGB-D SLAM Systems", '
        "IROS 2012)",
        "",
        "## Summary",
        "",
        *summary_table(report),
        "",
        '"cv2 RGB-D odometry" is OpenCV 5\'s `cv2.Odometry` of type RGB (dense photometric alignment of '
        'depth-lifted pixels), "+ICP" its RGB_DEPTH type (photometric + point-to-plane ICP), both with '
        "OpenCV's default settings. The monocular method's translation has unit norm every step; its ATE "
        "is after a Sim(3) alignment, which picks the scale that fits the ground truth best.",
        "",
        "## Every run",
        "",
        *full_table(report),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="TUM RGB-D folder (rgb.txt, depth.txt, ...)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for vo_tum.json/.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.data.is_dir():
        parser.error(f"TUM clip not found at {args.data} (it lives in ../shared/data beside the checkout)")
    report, tracks, gt = run(args.data, args.methods)
    text = markdown(report)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "vo_tum.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "vo_tum.md").write_text(text)
        plot(tracks, gt, args.out / "vo_tum.png")
        log.info("wrote %s", args.out / "vo_tum.md")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cost of every memory model on one CPU core: per-step update time, per-query time and state bytes vs T.

Every model (kinaema, gru, ema, truncated, full, keyframes) at its default size with untrained weights
(cost does not depend on the weights), batch 1, eval mode, no gradients, `torch.set_num_threads(1)` and
the process pinned to one core. Measured at T = 100, 1,000 and 10,000 steps: the update that takes in
step T and a query answered right after it, each the median over repeats made from the same state (an
update returns a new state and leaves the old one alone, so repeating it from one state is exact).

How the state at step T - 1 is reached: inputs are synthetic (random tokens of the encoder's shape, small
random odometry increments), so 10,000 steps need no 10,000 encoder passes. Recurrent models (kinaema, gru,
ema) are driven by T - 1 real updates (one run of 10,000 updates per model, measured at 100 and 1,000 on
the way). History models (truncated, full, keyframes) hold what their updates would have appended, so
their history is filled directly with T - 1 random frames (the window's last 16 for truncated) and poses
from a random walk: the same shapes an episode of T - 1 steps leaves, without the quadratic cost of
growing a 10,000-frame history one concatenation at a time. Only the update and query at step T are timed.
The image encoder runs once per frame for every model; it is timed separately (batch 1, 64x64).

Target: Kinaema's update under 10 ms per step on one core and flat in T; its state a constant
number of floats (slots and recall-ring rows, see `KinaemaConfig.state_rows`). Writes
`benchmarks/results/memory_cost.json`, `.md` and `.png` with the machine.

    python3 benchmarks/bench_memory.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import machine  # noqa: E402
from tqdm import tqdm  # noqa: E402

from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder  # noqa: E402
from spatial_memory.memory.interface import HistoryState, MemoryModel, se2_compose  # noqa: E402
from spatial_memory.memory.registry import build_model  # noqa: E402

log = logging.getLogger("bench_memory")
RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("kinaema", "gru", "ema", "truncated", "full", "keyframes")
LENGTHS = (100, 1_000, 10_000)
TARGET_UPDATE_MS = 10.0
SLOW_REPEATS = 5  # for cases slower than ~50 ms a call (the full history at 10,000 steps)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> dict:
    """Median, min and max wall time of `fn` in milliseconds over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": repeats,
    }


def random_odometry(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) increments like a robot touring at ~0.2 m and ~0.1 rad a step."""
    return torch.cat([torch.rand(n, 1, generator=gen) * 0.2, torch.randn(n, 2, generator=gen) * 0.05], dim=1)


def filled_history(model: MemoryModel, length: int, gen: torch.Generator) -> HistoryState:
    """The state a history model holds after `length` steps (its window's last frames for truncated)."""
    empty = model.init_state(1)
    kept = length if getattr(model, "window", None) is None else min(length, model.window)
    frames = torch.randn(1, kept, *empty.frames.shape[2:], generator=gen)
    if model.name == "keyframes":  # pooled, normalised embeddings
        frames = torch.nn.functional.normalize(frames, dim=-1)
    pose = torch.zeros(1, 3)
    poses = []
    for odo in random_odometry(kept, gen):
        pose = se2_compose(pose, odo[None])
        poses.append(pose)
    return HistoryState(frames=frames, poses=torch.cat(poses)[None], pose=pose)


@torch.no_grad()
def measure_model(
    name: str, encoder_config: EncoderConfig, lengths: tuple[int, ...], repeats: int
) -> list[dict]:
    """Update and query time and state bytes of model `name` at each T in `lengths`."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = build_model(name, None, encoder_config).eval()
    k, d = encoder_config.tokens_per_frame, encoder_config.token_dim
    token = torch.randn(1, k, d, generator=gen)
    query = torch.randn(1, k, d, generator=gen)
    odo = random_odometry(1, gen)
    recurrent = isinstance(model.init_state(1), torch.Tensor)
    state, done, rows = model.init_state(1), 0, []
    for length in lengths:
        if recurrent:  # drive it to step length - 1 for real
            for _ in tqdm(range(length - 1 - done), desc=f"{name} to T={length}", leave=False):
                state = model.update(state, torch.randn(1, k, d, generator=gen), random_odometry(1, gen))
            done = length - 1
        else:
            state = filled_history(model, length - 1, gen)
        slow = name == "full" and length >= 10_000
        n = SLOW_REPEATS if slow else repeats
        update = median_ms(lambda s=state: model.update(s, token, odo), n)
        after = model.update(state, token, odo)
        answer = median_ms(lambda s=after: model.query(s, query), n)
        rows.append(
            {
                "model": name,
                "T": length,
                "update": update,
                "query": answer,
                "state_bytes": model.state_nbytes(after),
                "state_floats": model.state_nbytes(after) // 4,
                "parameters": model.num_parameters(),
                "state_reached_by": "real updates" if recurrent else "history filled directly",
            }
        )
        log.info(
            "%-9s T=%5d update %.3f ms query %.3f ms state %d B",
            name,
            length,
            update["median_ms"],
            answer["median_ms"],
            rows[-1]["state_bytes"],
        )
    return rows


@torch.no_grad()
def measure_encoder(config: EncoderConfig, repeats: int) -> dict:
    """Encoder time per frame at batch 1 (uint8 image in, tokens out)."""
    torch.manual_seed(0)
    encoder = ImageEncoder(config).eval()
    image = torch.randint(0, 256, (1, 3, config.image_size, config.image_size), dtype=torch.uint8)
    return {
        **median_ms(lambda: encoder(image), repeats, warmup=5),
        "image_size": config.image_size,
        "parameters": sum(p.numel() for p in encoder.parameters()),
    }


def pin_one_core() -> None:
    """One intra-op thread, and the process on one core where the OS allows it."""
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})


def run(models: tuple[str, ...], lengths: tuple[int, ...], repeats: int) -> dict:
    pin_one_core()
    info = machine(torch=torch.__version__, numpy=np.__version__)
    info["torch_threads"] = torch.get_num_threads()
    config = EncoderConfig()
    encoder = measure_encoder(config, repeats)
    log.info("encoder %.3f ms per frame", encoder["median_ms"])
    rows = [
        row for name in tqdm(models, desc="models") for row in measure_model(name, config, lengths, repeats)
    ]
    return {"machine": info, "lengths": list(lengths), "encoder": encoder, "rows": rows}


def _kinaema_layout() -> str:
    """The default Kinaema state, in words (rows x floats per row)."""
    from spatial_memory.memory.kinaema import KinaemaConfig

    c = KinaemaConfig()
    rows, per_row = c.state_rows, c.state_dim
    return (
        f"{c.slots} slots + {c.recall} recall-ring entries + 1 step counter = {rows} rows x {per_row} "
        f"({c.dim} dims + an x, y, yaw anchor) = {rows * per_row:,} floats, "
        f"{rows * per_row * 4 / 1024:.0f} KiB"
    )


def kinaema_verdict(report: dict) -> str:
    rows = [r for r in report["rows"] if r["model"] == "kinaema"]
    if not rows:
        return ""
    worst = max(r["update"]["median_ms"] for r in rows)
    spread = worst / min(r["update"]["median_ms"] for r in rows)
    sizes = {r["state_floats"] for r in rows}
    meets = "meets it" if worst < TARGET_UPDATE_MS else "MISSES it"
    return (
        f"Target: Kinaema's update under {TARGET_UPDATE_MS:g} ms per step on one core, flat in T: at most "
        f"{worst:.2f} ms over T = {', '.join(str(r['T']) for r in rows)} ({meets}; slowest / fastest = "
        f"{spread:.2f}). Its state is {' / '.join(f'{s:,}' for s in sorted(sizes))} float32 numbers at "
        f"every T ({_kinaema_layout()})."
    )


def markdown(report: dict) -> str:
    m, enc = report["machine"], report["encoder"]
    lines = [
        "# Memory model cost",
        "",
        "`python3 benchmarks/bench_memory.py`: batch 1, one thread, one core, untrained default-size "
        "models, synthetic inputs; median over repeats of the update that takes in step T and of a query "
        "right after it.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores (run pinned to {m['pinned_to']}), {m['platform']}",
        f"- python {m['python']}, torch {m['torch']} ({m['torch_threads']} thread); run {m['date_utc']}, "
        f"load average {m['load_average_at_start']} at the start",
        f"- image encoder ({enc['image_size']}x{enc['image_size']}, {enc['parameters']:,} parameters): "
        f"{enc['median_ms']:.2f} ms per frame (runs once per step, add it to every model's update)",
        "",
        "| model | T | update ms | query ms | update + encoder ms | state bytes | parameters | "
        "state at T - 1 |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        u, q = r["update"]["median_ms"], r["query"]["median_ms"]
        lines.append(
            f"| {r['model']} | {r['T']:,} | {u:.3f} | {q:.3f} | {u + enc['median_ms']:.2f} | "
            f"{r['state_bytes']:,} | {r['parameters']:,} | {r['state_reached_by']} |"
        )
    lines += [
        "",
        kinaema_verdict(report),
        "",
        "Recurrent models (kinaema, gru, ema) reach step T - 1 by real updates on random tokens; history "
        "models (truncated, full, keyframes) get their history filled directly with T - 1 random frames "
        "(truncated keeps the last 16), then one update and one query are timed from there "
        f"({SLOW_REPEATS} repeats for the full history at 10,000 steps, whose every update copies the whole "
        "history and whose query attends over T x 8 tokens). Cost does not depend on the weights, so "
        "untrained models measure it.",
        "",
        "![time per step](memory_cost.png)",
        "",
    ]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    models = list(dict.fromkeys(r["model"] for r in report["rows"]))
    for colour, name in zip(colours, models, strict=False):
        rows = [r for r in report["rows"] if r["model"] == name]
        t = [r["T"] for r in rows]
        ax.plot(t, [r["update"]["median_ms"] for r in rows], "-o", color=colour, label=f"{name} update")
        ax.plot(
            t, [r["query"]["median_ms"] for r in rows], "--s", color=colour, label=f"{name} query", alpha=0.7
        )
    ax.axhline(report["encoder"]["median_ms"], color="grey", lw=1, ls=":", label="encoder (per frame)")
    ax.axhline(TARGET_UPDATE_MS, color="red", lw=1, ls="-.", label=f"{TARGET_UPDATE_MS:g} ms target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("steps T already in memory")
    ax.set_ylabel("ms per call (one core)")
    ax.set_title("Memory update and query time vs episode length", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=30, help="timed calls per case; the median is reported"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS), help="episode lengths T")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for memory_cost.json/.md/.png")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.repeats < 1 or any(t < 1 for t in args.lengths):
        parser.error("--repeats and --lengths must be positive")
    report = run(tuple(args.models), tuple(sorted(args.lengths)), args.repeats)
    text = markdown(report)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "memory_cost.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "memory_cost.md").write_text(text)
        plot(report, args.out / "memory_cost.png")
        log.info("wrote %s", args.out / "memory_cost.md")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

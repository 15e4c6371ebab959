"""Why our VO's correspondence is classical: what a learned operator of DPVO's size costs on 2 CPU cores.

Per frame DPVO runs two 1/4-resolution feature encoders (matching features, 128-d, instance norm; context
features, 384-d) and one pass of its recurrent update operator over the patch graph's edges (correlation of
each 3x3 patch against a 7x7 window at 2 pyramid levels, an MLP on it, messages along each patch's track,
two soft aggregations, a gated residual, flow and weight heads; sizes from ../shared/reference/papers.md
section 5). This script builds networks of those sizes in torch (our own layers, untrained: the cost does
not depend on the weights), times them at 640x480 and 320x240 with DPVO's default-config edge count, and
times our LK tracking step on the same images, all on 2 threads. It is a lower bound for DPVO: no
pyramid building, no BA, no patch bookkeeping. The frame budget at 15 Hz is 66.7 ms.

    python3 benchmarks/bench_vo_operator.py          # writes benchmarks/results/vo_operator.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from machine import machine
from torch import nn

from spatial_memory.vo import tum
from spatial_memory.vo.patch_vo import PatchVO

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rgbd_dataset_freiburg3_teddy_frames000-099"
OUT = Path(__file__).resolve().parent / "results"
DIM = 384  # context / hidden width
FEATURE_DIM = 128  # matching features
PATCHES_PER_FRAME = 96  # DPVO's default.yaml
PATCH_LIFETIME = 13
CORR_INPUT = 2 * 49 * 9  # 2 levels x 7x7 window x 3x3 patch
BUDGET_MS = 1000.0 / 15


class Residual(nn.Module):
    """Two 3x3 convolutions with a skip (stride 2: a 1x1 projection on the skip)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: bool) -> None:
        super().__init__()
        make_norm = (lambda c: nn.InstanceNorm2d(c)) if norm else (lambda c: nn.Identity())
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1), make_norm(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1), make_norm(cout),
        )  # fmt: skip
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def encoder(out_dim: int, norm: bool) -> nn.Module:
    """A 1/4-resolution residual encoder: 7x7 stride-2 stem to 32, 32 at 1/2, 64 at 1/4, 1x1 to out_dim."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 7, 2, 3), nn.ReLU(),
        Residual(32, 32, 1, norm), Residual(32, 32, 1, norm),
        Residual(32, 64, 2, norm), Residual(64, 64, 1, norm),
        nn.Conv2d(64, out_dim, 1),
    )  # fmt: skip


class Update(nn.Module):
    """One pass of an update operator of DPVO's widths over E edges (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.corr = nn.Sequential(
            nn.Linear(CORR_INPUT, DIM), nn.ReLU(), nn.LayerNorm(DIM), nn.Linear(DIM, DIM)
        )
        self.prev, self.next = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.agg = nn.ModuleList([nn.Linear(DIM, DIM) for _ in range(6)])  # 2 soft aggregations x f, g, h
        self.gru = nn.ModuleList([nn.Linear(DIM, DIM) for _ in range(4)])  # 2 gated residuals x gate, value
        self.norm = nn.LayerNorm(DIM)
        self.heads = nn.Linear(DIM, 4)

    def forward(self, net, ctx, corr, group_a, group_b, neighbour) -> torch.Tensor:
        net = self.norm(net + ctx + self.corr(corr))
        net = net + self.prev(net[neighbour]) + self.next(net[neighbour.flip(0)])
        for k, group in enumerate((group_a, group_b)):
            f, g, h = self.agg[3 * k : 3 * k + 3]
            w = torch.softmax(g(net), dim=0)  # a stand-in for the per-group softmax: same FLOPs
            pooled = torch.zeros_like(net).index_add_(0, group, f(net) * w)
            net = net + h(pooled[group])
        for k in range(2):
            gate, value = self.gru[2 * k], self.gru[2 * k + 1]
            net = net + torch.sigmoid(gate(net)) * value(net)
        return self.heads(net)


class Correlation:
    """3x3 patch features against 7x7 windows at two levels for every edge: (E, 882). Window centres and
    patch features are drawn once; a call gathers only the windows the edges need and correlates."""

    def __init__(self, fmap: torch.Tensor, edges: int) -> None:
        rng = np.random.default_rng(0)
        c = fmap.shape[1]
        offsets = torch.arange(-3, 4)
        self.levels = []
        for level in (1, 4):
            hh, ww = fmap.shape[2] // level, fmap.shape[3] // level
            y = torch.as_tensor(rng.integers(3, hh - 3, edges))[:, None, None] + offsets[None, :, None]
            x = torch.as_tensor(rng.integers(3, ww - 3, edges))[:, None, None] + offsets[None, None, :]
            self.levels.append((level, (y * ww + x).reshape(-1), torch.randn(edges, 9, c)))
        self.edges, self.channels = edges, c

    def __call__(self, fmap: torch.Tensor) -> torch.Tensor:
        out = []
        for level, index, patch in self.levels:
            f = fmap[0] if level == 1 else nn.functional.avg_pool2d(fmap, level)[0]
            windows = f.reshape(self.channels, -1).index_select(1, index)  # (c, E * 49)
            windows = windows.reshape(self.channels, self.edges, 49).permute(1, 0, 2)
            out.append(torch.bmm(patch, windows).reshape(self.edges, -1))
        return torch.cat(out, dim=1)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def lk_ms(resolution: tuple[int, int], repeats: int) -> tuple[float, int]:
    """Our LK tracking step (forward-backward, predicted start) on a TUM frame after 12 tracked ones, in ms,
    and how many patches it tracked."""
    seq = tum.read_tum(DATA, stride=2)
    K = tum.scaled_K(seq.K, (seq.width, seq.height), resolution)
    vo = PatchVO(K, *resolution)
    warm = 12  # frames tracked first, so the live patch set is at its steady size
    frames = [tum.load_rgb(seq, i, resolution) for i in range(warm + 1)]
    depth = [tum.load_depth(seq, i, resolution) for i in range(warm)]
    for i in range(warm):
        vo.track(frames[i], seq.frames[i].stamp, depth=depth[i])
    gray = cv2.cvtColor(frames[warm], cv2.COLOR_RGB2GRAY)
    n = vo.frames
    vo._T_cw[n] = vo._T_cw[n - 1]  # the step as track() calls it, without committing the frame

    alive = {id(p) for p in vo._patches if p.alive}

    def step() -> int:
        for p in vo._patches:
            p.obs.pop(n, None)
            p.alive = id(p) in alive
        return vo._track_patches(gray, n, None, None)

    return median_ms(step, repeats), step()


def measure(resolution: tuple[int, int], repeats: int) -> dict:
    w, h = resolution
    image = torch.randn(1, 3, h, w)
    fnet, inet, update = encoder(FEATURE_DIM, True).eval(), encoder(DIM, False).eval(), Update().eval()
    edges = 2 * PATCHES_PER_FRAME * PATCH_LIFETIME  # forward + backward edges of the newest frame
    with torch.inference_mode():
        fmap = fnet(image)
        correlation = Correlation(fmap, edges)
        inputs = (
            torch.randn(edges, DIM),
            torch.randn(edges, DIM),
            correlation(fmap),
            torch.randint(0, PATCHES_PER_FRAME * PATCH_LIFETIME, (edges,)),
            torch.randint(0, PATCH_LIFETIME**2, (edges,)),
            torch.randperm(edges),
        )
        result = {
            "resolution": f"{w}x{h}",
            "edges": edges,
            "matching_encoder_ms": median_ms(lambda: fnet(image), repeats),
            "context_encoder_ms": median_ms(lambda: inet(image), repeats),
            "correlation_ms": median_ms(lambda: correlation(fmap), repeats),
            "update_ms": median_ms(lambda: update(*inputs), repeats),
        }
    result["learned_total_ms"] = sum(v for k, v in result.items() if k.endswith("_ms"))
    result["our_lk_ms"], result["our_lk_tracks"] = lk_ms(resolution, repeats)
    return result


def report(rows: list[dict], info: dict) -> str:
    lines = [
        "# A learned correspondence operator of DPVO's size on 2 CPU cores",
        "",
        "`python3 benchmarks/bench_vo_operator.py`: networks of DPVO's sizes (untrained; see the script), "
        "median of repeats, torch on 2 threads, next to our LK tracking step on TUM frames. A lower bound "
        f"for DPVO (no BA, no bookkeeping). Budget at 15 Hz: {BUDGET_MS:.1f} ms a frame.",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['platform']}; torch {info['torch']}, "
        f"opencv {info['opencv']}; {info['date_utc']}, load {info['load_average_at_start']}",
        "",
        "| resolution | edges | matching encoder ms | context encoder ms | correlation ms | update ms | "
        "learned total ms | our LK ms (tracks) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['resolution']} | {r['edges']} | {r['matching_encoder_ms']:.1f} | "
            f"{r['context_encoder_ms']:.1f} | {r['correlation_ms']:.1f} | {r['update_ms']:.1f} | "
            f"{r['learned_total_ms']:.1f} | {r['our_lk_ms']:.1f} ({r['our_lk_tracks']}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    info = machine(torch=torch.__version__, opencv=cv2.__version__)
    rows = [measure(r, args.repeats) for r in ((640, 480), (320, 240))]
    text = report(rows, info)
    print(text)
    if not args.no_write:
        OUT.mkdir(exist_ok=True)
        (OUT / "vo_operator.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
        (OUT / "vo_operator.md").write_text(text)


if __name__ == "__main__":
    main()

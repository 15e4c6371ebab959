"""Mem-RPE of memory models on held-out worlds: every model over the same episodes and the same queries.

`evaluate` runs each model step by step over each episode (batch 1, the deployment setting; eval mode, no
gradients), answers every query right after the model took in the query's step (a query at step t was drawn
after the robot saw frame t) and scores all answers with `metrics.mem_rpe`. Encoders are run once per
episode and their tokens reused by every model that shares them.

Which queries count at length T: every query asked at a step in [0, T) of an episode run for its first T
steps. Episodes of exactly T steps are the normal case (the recorder spreads queries over the whole
episode, one every `queries_every` steps from the first step with enough seen to ask about); a longer
episode is cut at T, so its later queries do not count. Pose scores use the seen queries; the unseen ones
score the 'not seen' detection rate.

Where the episodes come from (`episodes_for`): a dataset folder whose `dataset.json` holds every requested
seed at this preset, length and resolution (any split); otherwise they are recorded once into a cache
folder per (preset, resolution, length) with `data.build_dataset`, so any world seeds work.

Models (`load_models`, the CLI's `--models`):
- a checkpoint file (`registry.load_checkpoint`, which carries the model's own encoder);
- 'keyframes': non-parametric retrieval through a given encoder (a checkpoint's, or an untrained one with a
  fixed seed, which shows that the pipeline works but measures little); its camera offset is read from the
  episodes, so it answers camera poses as the queries' targets are;
- 'here': the floor every table carries. It answers the robot's current pose (0, 0, 0) and 'seen' to every
  query: what a memory that remembers nothing scores;
- nothing given: every checkpoint in `models/` (plus 'here').

Picture control (`mem_rpe_report`): at the same memory state, every query is also answered with another
query's picture (query i of an episode gets the picture of query (i + n/2) mod n, a place asked about half
an episode apart). A memory that reads the picture scores worse with the wrong one and moves its answer;
one that answers a learned guess from its state alone scores the same and does not move. The report
gives, per model, Mem-RPE with the swapped pictures and the median distance the answer moved.

    spatial-memory eval mem-rpe --seeds 1000-1007 --length 200 --data /work/datasets/house64_v1 --out r.json
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from spatial_memory.atomic import write_file_atomic
from spatial_memory.errors import InvalidInputError
from spatial_memory.memory.data import DatasetSpec, EpisodeArrays, build_dataset, open_dataset
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.interface import POSE_DIMS, MemoryConfig, MemoryModel, QueryOutput
from spatial_memory.memory.metrics import MemRpe, mem_rpe, table
from spatial_memory.memory.poses import planar_target
from spatial_memory.provenance import machine
from spatial_memory.sim.compact import CompactEpisode

log = logging.getLogger(__name__)

RESULT_FORMAT = "spatial_memory.mem_rpe"
RESULT_VERSION = 1
HERE = "here"
KEYFRAMES = "keyframes"
DEFAULT_MODELS_DIR = Path("models")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
UNTRAINED_ENCODER_SEED = 0
SCORING = (
    "every query asked at a step in [0, T) of each episode run for its first T steps; each answered right "
    "after the model took in that step; pose scores over the seen queries, detection over the unseen ones"
)

ModelEntry = tuple[MemoryModel, ImageEncoder | None]


# ---------------------------------------------------------------------------------------------------------
# the floor: a model that remembers nothing


class HereBaseline(MemoryModel):
    """Answers the robot's current pose, (0, 0, 0) relative to itself, and 'seen', whatever it is asked.

    The floor of every Mem-RPE table: it scores the queries whose place happens to be where the robot is
    now. It reads no image, so it needs no encoder (the evaluation feeds it zero tokens).
    """

    name = HERE

    def __init__(self, config: MemoryConfig | None = None) -> None:
        super().__init__()
        self.config = config or MemoryConfig()
        self.register_buffer("_ref", torch.zeros(()), persistent=False)

    def init_state(self, batch: int) -> Tensor:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInputError(f"batch must be a positive integer, got {batch!r}")
        return self._ref.new_zeros(batch, 0)

    def _update(self, state: Tensor, tokens: Tensor, odometry: Tensor) -> Tensor:
        return state

    def _query(self, state: Tensor, query_tokens: Tensor) -> QueryOutput:
        b = query_tokens.shape[0]
        pose = query_tokens.new_zeros(b, POSE_DIMS[self.config.pose_mode])
        if self.config.pose_mode == "planar":
            pose[:, 3] = 1.0  # cos 0
        else:
            pose[:, 3], pose[:, 7] = 1.0, 1.0  # identity rotation's first two columns
        return QueryOutput(pose, query_tokens.new_zeros(b), query_tokens.new_full((b,), 20.0))


# ---------------------------------------------------------------------------------------------------------
# running the models


@dataclass(frozen=True)
class Answers:
    """One model's answers to the evaluated queries, in episode then query order.

    pred: (N, 3) planar (x m, y m, yaw rad) of the queried camera in the base frame at the query's step.
    seen_prob: (N,) probability the model gives that the place was seen.
    sigma: (N,) the model's standard deviation of its position error (m).
    """

    pred: np.ndarray
    seen_prob: np.ndarray
    pred_swapped: np.ndarray | None = None  # (N, 3) answers to the picture of query swap[i] (see above)
    sigma: np.ndarray | None = None


def swap_order(n: int) -> np.ndarray:
    """The picture control's pairing: query i is also asked with the picture of query (i + n // 2) mod n."""
    return (np.arange(n) + n // 2) % n if n else np.zeros(0, dtype=int)


def planar_answers(output: QueryOutput) -> np.ndarray:
    """(B, 3) planar (x, y, yaw) of a batch of answers, as `poses.planar_target` defines a target.

    Planar answers carry (x, y, sin, cos). An 'se3' answer is the camera's optical frame; its rotation is
    rebuilt from the 6D representation (Gram-Schmidt) and reduced exactly as the targets are.
    """
    pose = output.pose.detach().double().cpu()
    if pose.shape[-1] == POSE_DIMS["planar"]:
        return torch.stack([pose[:, 0], pose[:, 1], torch.atan2(pose[:, 2], pose[:, 3])], dim=-1).numpy()
    a, b = pose[:, 3:6], pose[:, 6:9]
    r1 = torch.nn.functional.normalize(a, dim=-1)
    r2 = torch.nn.functional.normalize(b - (r1 * b).sum(-1, keepdim=True) * r1, dim=-1)
    T = torch.eye(4, dtype=pose.dtype).repeat(len(pose), 1, 1)
    T[:, :3, 0], T[:, :3, 1], T[:, :3, 2], T[:, :3, 3] = r1, r2, torch.cross(r1, r2, dim=-1), pose[:, :3]
    return planar_target(T.numpy())


def _images(array: np.ndarray) -> Tensor:
    """(N, H, W, 3) uint8 (possibly memory-mapped) -> (N, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(array), -1, 1)))


@torch.no_grad()
def encode_images(encoder: ImageEncoder, images: np.ndarray, chunk: int = 256) -> Tensor:
    size = encoder.config.image_size
    if images.shape[1:3] != (size, size):
        raise InvalidInputError(
            f"the encoder reads {size}x{size} images but the episode has {images.shape[2]}x{images.shape[1]}"
        )
    parts = [encoder(_images(images[i : i + chunk])).tokens for i in range(0, len(images), chunk)]
    return (
        torch.cat(parts)
        if parts
        else torch.zeros(0, encoder.config.tokens_per_frame, encoder.config.token_dim)
    )


@torch.no_grad()
def run_episode(
    model: MemoryModel,
    tokens: Tensor,
    odometry: np.ndarray,
    query_step: np.ndarray,
    query_tokens: Tensor,
    swap: np.ndarray | None = None,
) -> Answers:
    """Run `model` over one episode's `tokens` (T, K, D) and `odometry` (T, 3), batch 1, answering query i
    (tokens `query_tokens[i]`) right after step `query_step[i]`; returns the answers in query order.
    With `swap`, query i is also answered, at the same state, with the tokens of query `swap[i]`."""
    if len(query_step) != len(query_tokens):
        raise InvalidInputError(f"{len(query_step)} query steps but {len(query_tokens)} query token sets")
    odo = torch.as_tensor(np.asarray(odometry), dtype=tokens.dtype)
    by_step: dict[int, list[int]] = {}
    for i, s in enumerate(np.asarray(query_step).tolist()):
        by_step.setdefault(int(s), []).append(i)
    pred = np.full((len(query_step), 3), np.nan)
    swapped = None if swap is None else np.full((len(query_step), 3), np.nan)
    seen = np.zeros(len(query_step))
    sigma = np.full(len(query_step), np.nan)
    state = model.init_state(1)
    for t in range(len(tokens)):
        state = model.update(state, tokens[t : t + 1], odo[t : t + 1])
        for i in by_step.get(t, ()):
            out = model.query(state, query_tokens[i : i + 1])
            pred[i] = planar_answers(out)[0]
            seen[i] = float(torch.sigmoid(out.seen_logit.double())[0])
            sigma[i] = float(torch.exp(out.log_sigma.double())[0])
            if swapped is not None:
                j = int(swap[i])
                swapped[i] = planar_answers(model.query(state, query_tokens[j : j + 1]))[0]
    return Answers(pred=pred, seen_prob=seen, pred_swapped=swapped, sigma=sigma)


def scored_queries(episode: EpisodeArrays, length: int) -> np.ndarray:
    """Indices of the queries of `episode` scored at length T: those asked at steps [0, T)."""
    if episode.num_steps < length:
        raise InvalidInputError(f"{episode.path} has {episode.num_steps} steps, fewer than T = {length}")
    return episode.queries_in(0, length)


def evaluate(
    models: Mapping[str, ModelEntry],
    episodes: Sequence[EpisodeArrays],
    length: int,
    progress: bool = True,
) -> dict[str, MemRpe]:
    """Mem-RPE of every model over the first `length` steps of every episode, on the same queries.

    models: name -> (model, encoder); the encoder may be None only for models that read no image ('here').
    Returns name -> MemRpe in the order of `models`. See the module docstring for which queries count.
    """
    collected = _collect(models, episodes, length, progress)
    return {name: mem_rpe(*args[:4]) for name, args in collected.items()}


def _collect(
    models: Mapping[str, ModelEntry],
    episodes: Sequence[EpisodeArrays],
    length: int,
    progress: bool,
    control: bool = False,
) -> dict[str, tuple[np.ndarray, ...]]:
    """name -> (pred, target, seen, seen_prob[, pred_swapped]) over all scored queries of all episodes;
    pred_swapped (the picture control) with `control`."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise InvalidInputError(f"length must be a positive integer, got {length!r}")
    if not models:
        raise InvalidInputError("no model to evaluate")
    if not episodes:
        raise InvalidInputError("no episode to evaluate on")
    for name, entry in models.items():
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], MemoryModel)):
            raise InvalidInputError(f"model {name!r} must be a (MemoryModel, ImageEncoder | None) pair")
    selected = [scored_queries(ep, length) for ep in episodes]
    target = np.concatenate([ep.query_target[q] for ep, q in zip(episodes, selected, strict=True)])
    seen = np.concatenate([ep.query_seen[q] for ep, q in zip(episodes, selected, strict=True)])
    preds: dict[str, list[np.ndarray]] = {name: [] for name in models}
    probs: dict[str, list[np.ndarray]] = {name: [] for name in models}
    swapped: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for m, _ in models.values():
        m.eval()
    bar = tqdm(total=len(episodes) * len(models), desc="mem-rpe", unit="run", disable=not progress)
    for ep, q in zip(episodes, selected, strict=True):
        cache: dict[int, tuple[Tensor, Tensor]] = {}  # encoder id -> (frame tokens, query tokens)
        for name, (model, encoder) in models.items():
            if encoder is None:
                k, d = model.config.tokens_per_frame, model.config.token_dim
                tokens, query_tokens = torch.zeros(length, k, d), torch.zeros(len(q), k, d)
            else:
                if id(encoder) not in cache:
                    encoder.eval()
                    cache[id(encoder)] = (
                        encode_images(encoder, ep.rgb[:length]),
                        encode_images(encoder, ep.query_rgb[q]),
                    )
                tokens, query_tokens = cache[id(encoder)]
            swap = swap_order(len(q)) if control else None
            answers = run_episode(model, tokens, ep.odometry[:length], ep.query_step[q], query_tokens, swap)
            preds[name].append(answers.pred)
            probs[name].append(answers.seen_prob)
            swapped[name].append(answers.pred_swapped)
            bar.update()
    bar.close()
    out = {}
    for name in models:
        pred, prob = np.concatenate(preds[name]), np.concatenate(probs[name])
        if len(pred) != len(target):  # every model must answer the same queries
            raise AssertionError(f"{name} answered {len(pred)} queries, not {len(target)}")
        out[name] = (pred, target, seen, prob)
        if control:
            out[name] += (np.concatenate(swapped[name]),)
    return out


def picture_control(pred: np.ndarray, swapped: np.ndarray, target: np.ndarray, seen: np.ndarray) -> dict:
    """Mem-RPE with another query's picture, and the median distance (m) the answer moved, seen queries."""
    moved = np.hypot(*(pred[seen, :2] - swapped[seen, :2]).T) if seen.any() else np.zeros(0)
    return {
        "swapped_mem_rpe": mem_rpe(swapped, target, seen).to_dict(),
        "median_answer_shift_m": float(np.median(moved)) if len(moved) else None,
    }


def control_table(report: Mapping[str, Any]) -> str:
    """Markdown: each model's score with its own pictures, with swapped ones, and how far answers moved."""
    lines = [
        "| model | <=2 m, 90 deg % (own picture) | <=2 m, 90 deg % (another query's picture) "
        "| median answer shift m |",
        "|---|---:|---:|---:|",
    ]
    for name, m in report["models"].items():
        own = m["metrics"]["within_2m_90deg_pct"]
        control = m["picture_control"]
        other = control["swapped_mem_rpe"]["within_2m_90deg_pct"]
        shift = control["median_answer_shift_m"]
        cells = [_pct(own), _pct(other), "-" if shift is None else f"{shift:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# ---------------------------------------------------------------------------------------------------------
# episodes


def _matching_dataset(root: Path, seeds: Sequence[int], spec: DatasetSpec) -> list[Path] | None:
    """The seeds' episode folders in dataset `root` if it was recorded like `spec` and holds them all."""
    try:
        index = open_dataset(root)
    except InvalidInputError as exc:
        log.warning("ignoring --data %s: %s", root, exc)
        return None
    have = index.spec
    fields = ("preset", "steps", "width", "height", "query_min_age_steps")
    if any(getattr(have, f) != getattr(spec, f) for f in fields):
        log.info("%s holds other episodes (%s) than %s", root, have.recording(), spec.recording())
        return None
    by_seed = {e.seed: index.root / e.path for e in index.episodes}
    if not all(s in by_seed for s in seeds):
        log.info("%s lacks seeds %s", root, sorted(set(seeds) - set(by_seed)))
        return None
    return [by_seed[s] for s in seeds]


def episode_paths(
    seeds: Sequence[int],
    length: int,
    preset: str = "house",
    resolution: tuple[int, int] = (64, 64),
    data: Sequence[str | Path] = (),
    cache_dir: str | Path = Path("outputs/eval_episodes"),
    progress: bool = True,
    query_min_age_steps: int = DatasetSpec.query_min_age_steps,
) -> list[Path]:
    """Compact episode folders of `seeds` at length T, from the first matching dataset in `data`, else
    recorded (once, resumably) into `cache_dir/<preset>_<W>x<H>_T<length>` (`_age<N>` added where seen
    queries start from views at least N steps old, N not the default)."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise InvalidInputError("give at least one world seed")
    width, height = resolution
    spec = DatasetSpec(
        preset=preset, val_seeds=seeds, steps=length, width=width, height=height,
        query_min_age_steps=query_min_age_steps,
    )  # fmt: skip
    for root in data:
        paths = _matching_dataset(Path(root), seeds, spec)
        if paths is not None:
            log.info("episodes from dataset %s", root)
            return paths
    age = "" if query_min_age_steps == DatasetSpec.query_min_age_steps else f"_age{query_min_age_steps}"
    folder = Path(cache_dir) / f"{preset}_{width}x{height}_T{length}{age}"
    log.info("recording the episodes of seeds %s (T=%d) into %s", list(seeds), length, folder)
    index = build_dataset(spec, folder, progress=progress)
    by_seed = {e.seed: index.root / e.path for e in index.episodes}
    return [by_seed[s] for s in seeds]


def episodes_for(
    seeds: Sequence[int],
    length: int,
    preset: str = "house",
    resolution: tuple[int, int] = (64, 64),
    data: Sequence[str | Path] = (),
    cache_dir: str | Path = Path("outputs/eval_episodes"),
    progress: bool = True,
    query_min_age_steps: int = DatasetSpec.query_min_age_steps,
) -> list[EpisodeArrays]:
    """The episodes of `seeds` at length T (see `episode_paths`), loaded with images in RAM."""
    paths = episode_paths(seeds, length, preset, resolution, data, cache_dir, progress, query_min_age_steps)
    return [EpisodeArrays.load(p, mmap=False) for p in paths]


def head_camera_offset(episode: EpisodeArrays) -> tuple[float, float, float]:
    """Planar pose (x, y, yaw of the optical axis) of the head camera in the base frame, from step 0.

    The keyframe baseline stores base poses but must answer camera poses, as the queries' targets are.
    """
    with CompactEpisode(episode.path, mmap=True) as ep:
        T_world_cam = np.array(ep.array("camera.T_world_cam")[0])
    T_base_cam = np.linalg.inv(episode.T_world_base[0]) @ T_world_cam
    return tuple(float(v) for v in planar_target(T_base_cam))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------
# models


def untrained_encoder(image_size: int) -> ImageEncoder:
    """An encoder with random weights from a fixed seed (reproducible; for pipeline checks only)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(UNTRAINED_ENCODER_SEED)
    try:
        return ImageEncoder(EncoderConfig(image_size=image_size)).eval()
    finally:
        torch.random.set_rng_state(generator_state)


def load_models(
    sources: Sequence[str],
    image_size: int,
    camera_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    encoder_checkpoint: str | Path | None = None,
    models_dir: str | Path = DEFAULT_MODELS_DIR,
) -> tuple[dict[str, ModelEntry], dict[str, str]]:
    """Models named by `sources` (checkpoint paths, 'keyframes', 'here'; empty: every checkpoint in
    `models_dir`), always with 'here' first.

    Returns (name -> (model, encoder), name -> where it came from). A checkpoint is named by its file stem.
    """
    from spatial_memory.memory.registry import build_model, load_checkpoint

    if not sources:
        found = sorted(p for p in Path(models_dir).glob("*") if p.suffix in CHECKPOINT_SUFFIXES)
        if not found:
            log.warning("no checkpoint in %s: only the '%s' floor is evaluated", models_dir, HERE)
        sources = [str(p) for p in found]
    models: dict[str, ModelEntry] = {HERE: (HereBaseline(), None)}
    origin = {HERE: "the robot's current pose (0, 0, 0) and 'seen' for every query (the floor)"}
    shared: ImageEncoder | None = None
    for source in sources:
        if source == HERE:
            continue
        if source == KEYFRAMES:
            if shared is None:
                if encoder_checkpoint is not None:
                    shared = load_checkpoint(encoder_checkpoint).encoder
                    if shared is None:
                        raise InvalidInputError(f"{encoder_checkpoint} holds no encoder for 'keyframes'")
                    how = f"the encoder of {encoder_checkpoint}"
                else:
                    shared = untrained_encoder(image_size)
                    how = f"an UNTRAINED encoder (random weights, seed {UNTRAINED_ENCODER_SEED})"
                    log.warning("'keyframes' reads through %s: a pipeline check, not a result", how)
            model = build_model(KEYFRAMES, None, shared.config, camera_offset=tuple(camera_offset))
            models[KEYFRAMES], origin[KEYFRAMES] = (model.eval(), shared), f"cosine retrieval through {how}"
            continue
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(
                f"--models {source!r} is neither a checkpoint file nor one of {HERE!r}, {KEYFRAMES!r}"
            )
        ckpt = load_checkpoint(path)
        if ckpt.encoder is None and ckpt.model.name != HERE:
            raise InvalidInputError(
                f"{path} holds no encoder: the {ckpt.model.name} model cannot read images"
            )
        name = path.stem if path.stem not in models else f"{path.stem}_{len(models)}"
        models[name], origin[name] = (ckpt.model.eval(), ckpt.encoder), f"{ckpt.model.name} checkpoint {path}"
    return models, origin


# ---------------------------------------------------------------------------------------------------------
# the report


def machine_info() -> dict[str, Any]:
    """The machine an evaluation ran on (CPU, cores, platform, Python, torch, date, load)."""
    return machine(torch=torch.__version__)


def mem_rpe_report(
    models: Mapping[str, ModelEntry],
    episodes: Sequence[EpisodeArrays],
    seeds: Sequence[int],
    length: int,
    origin: Mapping[str, str] | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, MemRpe]]:
    """Evaluate and build the JSON report (metrics per model, query counts, seeds, T, machine, date)."""
    collected = _collect(models, episodes, length, progress, control=True)
    rows = {name: mem_rpe(*args[:4]) for name, args in collected.items()}
    per_episode = []
    for seed, ep in zip(seeds, episodes, strict=True):
        q = scored_queries(ep, length)
        entry = {
            "seed": int(seed),
            "queries": len(q),
            "seen": int(ep.query_seen[q].sum()),
            "path": str(ep.path),
        }
        per_episode.append(entry)
    seen = next(iter(collected.values()))[2]
    report = {
        "format": RESULT_FORMAT,
        "format_version": RESULT_VERSION,
        "length": length,
        "seeds": [int(s) for s in seeds],
        "scoring": SCORING,
        "queries": {
            "total": len(seen),
            "seen": int(seen.sum()),
            "unseen": int((~seen).sum()),
            "per_episode": per_episode,
        },
        "models": {
            name: {
                "source": (origin or {}).get(name, ""),
                "metrics": row.to_dict(),
                "picture_control": picture_control(
                    collected[name][0], collected[name][4], collected[name][1], collected[name][2]
                ),
            }
            for name, row in rows.items()
        },
        "table": table(rows),
        "machine": machine_info(),
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    return report, rows


def write_report(report: Mapping[str, Any], out: str | Path) -> Path:
    """Write the JSON report atomically, and the table as Markdown next to it (same name, .md)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(out, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode())
    md = [
        f"# Mem-RPE at T = {report['length']}",
        "",
        f"Seeds {report['seeds']}; {report['queries']['total']} queries ({report['queries']['seen']} seen, "
        f"{report['queries']['unseen']} unseen), the same for every model. Scored: {report['scoring']}.",
        "",
        report["table"],
        "",
        *(f"- {name}: {m['source']}" for name, m in report["models"].items()),
        "",
        "Picture control: the same queries at the same memory states, each asked with the picture of another",
        "query of its episode (half an episode apart). A memory that reads the picture loses accuracy and",
        "moves its answer; one that answers from its state alone does neither.",
        "",
        control_table(report),
        "",
        f"{report['machine']['cpu']}, {report['date_utc']}",
        "",
    ]
    write_file_atomic(out.with_suffix(".md"), "\n".join(md).encode())
    return out


# ---------------------------------------------------------------------------------------------------------
# calibration of the reported sigma


def calibrate_sigma(
    model: MemoryModel,
    encoder: ImageEncoder,
    episodes: Sequence[EpisodeArrays],
    length: int,
    coverage: float = 0.68,
    min_answers: int = 10,
) -> dict[str, float]:
    """The factor on the model's sigma after which the reported 1-sigma covers `coverage` of the position
    errors of the seen queries of `episodes` (validation worlds, never the test ones): the `coverage`
    quantile of error / sigma. Returns the factor (relative to the model's current sigma), the coverage
    before, and how many answers it was fitted on."""
    if not 0.0 < coverage < 1.0:
        raise InvalidInputError(f"coverage must be within (0, 1), got {coverage!r}")
    ratios = []
    for ep in episodes:
        q = scored_queries(ep, length)
        tokens, query_tokens = (
            encode_images(encoder, ep.rgb[:length]),
            encode_images(encoder, ep.query_rgb[q]),
        )
        with torch.no_grad():
            a = run_episode(model.eval(), tokens, ep.odometry[:length], ep.query_step[q], query_tokens)
        seen = ep.query_seen[q]
        err = np.hypot(*(a.pred[seen, :2] - ep.query_target[q][seen, :2]).T)
        ratios.append(err / a.sigma[seen])
    ratio = np.concatenate(ratios) if ratios else np.zeros(0)
    if ratio.size < min_answers:
        raise InvalidInputError(f"only {ratio.size} seen answers: too few to calibrate on")
    return {
        "factor": float(np.quantile(ratio, coverage)),
        "coverage_before": float((ratio <= 1.0).mean()),
        "answers": int(ratio.size),
        "target_coverage": float(coverage),
    }

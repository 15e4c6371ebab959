"""Training and evaluation data for the memory: datasets of recorded world episodes, and TBPTT windows.

A dataset is a folder of compact episodes (`sim.compact`) of the mobile FR3 touring generated worlds
(`sim.world_episode`), one per world seed, split into training worlds and held-out validation worlds
(different seeds, so different floor plans, furniture and textures):

    DIR/dataset.json               the index: the DatasetSpec and one entry per recorded episode
    DIR/train/seed_00000/compact   episode.json + .npy arrays (images, poses, odometry, queries)
    DIR/val/seed_01000/compact

`build_dataset` records the episodes that are not there yet, so an interrupted build resumes where it
stopped, and rewrites the index atomically after each one. Each episode's wheel-odometry noise is seeded
with its world seed, so no two worlds share a noise sequence.

Reading: `EpisodeArrays.load` gives one episode as numpy arrays (no torch): the head camera's images
(uint8), the per-step odometry increments of the *noisy* wheel odometry (`poses.odometry_increments`),
and the queries with their planar targets (`poses.planar_target`). `SequenceDataset` serves those as
torch windows for truncated backpropagation through time, and `TbpttBatchSampler` orders the windows so
that batch k+1 continues the episodes of batch k. Images stay uint8 until the model normalises them.

A query at step t was drawn after the robot saw frame t (`sim.queries`): a model answers it after folding
in step t.

    spatial-memory dataset build --preset house --train-seeds 0-39 --val-seeds 1000-1007 \\
        --steps 200 --resolution 64x64 --out DIR
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from spatial_memory.atomic import write_file_atomic
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.poses import odometry_increments, planar_target
from spatial_memory.sim.compact import COMPACT_INDEX, DEPTH_DTYPES, CompactEpisode
from spatial_memory.sim.presets import WORLD_PRESETS

log = logging.getLogger(__name__)

DATASET_INDEX = "dataset.json"
DATASET_FORMAT = "spatial_memory.memory_dataset"
DATASET_VERSION = 1
SPLITS = ("train", "val")


# ----------------------------------------------------------------------------------------------------
# Spec
# ----------------------------------------------------------------------------------------------------


def parse_seeds(text: str | Sequence[str]) -> tuple[int, ...]:
    """World seeds from text such as '0-39', '1000-1007', '0-3,7,9' (or several such strings), in order.

    Ranges are inclusive at both ends.
    """
    parts = [text] if isinstance(text, str) else list(text)
    seeds: list[int] = []
    for token in (t.strip() for p in parts for t in p.split(",")):
        if not token:
            continue
        try:
            lo, _, hi = token.partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError as exc:
            raise ConfigError(f"seeds must look like '0-39' or '0,3,7', got {token!r}") from exc
        if first > last:
            raise ConfigError(f"seed range {token!r} runs backwards")
        seeds.extend(range(first, last + 1))
    return tuple(seeds)


def _check_seeds(name: str, seeds: object) -> tuple[int, ...]:
    try:
        values = tuple(seeds)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(f"{name} must be a sequence of integers, got {seeds!r}") from exc
    for s in values:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ConfigError(f"{name} must be non-negative integers, got {s!r}")
    values = tuple(int(s) for s in values)
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} has duplicates: {values}")
    return values


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset holds: the world preset, which world seeds train and which validate, and how each
    episode is recorded (steps, head/wrist image size, step rate, a query every `queries_every` steps).

    Validation seeds are held-out worlds and must not overlap the training seeds. Either list may be
    empty (an evaluation-only dataset has no training seeds), not both. `queries_every` defaults to 5,
    a fifth of the query sampler's default: queries cost little to record (about 40 per 200 steps add
    no measurable time) and are the only supervision. Depth is stored as float16 (the memory does not
    read it; it is kept for the query checks and other tools).
    """

    preset: str = "house"
    train_seeds: tuple[int, ...] = ()
    val_seeds: tuple[int, ...] = ()
    steps: int = 200
    width: int = 64
    height: int = 64
    rate_hz: float = 5.0
    queries_every: int = 5
    depth_dtype: str = "float16"
    query_min_age_steps: int = 20  # a seen query starts from a view at least this many steps old

    def __post_init__(self) -> None:
        if self.preset not in WORLD_PRESETS:
            raise ConfigError(f"preset must be one of {sorted(WORLD_PRESETS)}, got {self.preset!r}")
        train = _check_seeds("train_seeds", self.train_seeds)
        val = _check_seeds("val_seeds", self.val_seeds)
        object.__setattr__(self, "train_seeds", train)
        object.__setattr__(self, "val_seeds", val)
        if not train and not val:
            raise ConfigError("a dataset needs at least one training or validation seed")
        shared = sorted(set(train) & set(val))
        if shared:
            raise ConfigError(f"validation worlds must be held out: seeds {shared} are in both splits")
        self._check_ints()
        rate = self.rate_hz
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate <= 15.0:
            raise ConfigError(f"rate_hz must be within (0, 15] (the control rate), got {rate!r}")
        if self.depth_dtype not in DEPTH_DTYPES:
            raise ConfigError(f"depth_dtype must be one of {DEPTH_DTYPES}, got {self.depth_dtype!r}")

    def _check_ints(self) -> None:
        limits = {
            "steps": (1, 100_000),
            "width": (16, 1024),
            "height": (16, 1024),
            "queries_every": (1, 100_000),
            "query_min_age_steps": (1, 100_000),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"{name} must be an integer within [{lo}, {hi}], got {value!r}")

    def seeds(self, split: str) -> tuple[int, ...]:
        """The world seeds of a split ('train' or 'val')."""
        if split not in SPLITS:
            raise InvalidInputError(f"split must be one of {SPLITS}, got {split!r}")
        return self.train_seeds if split == "train" else self.val_seeds

    def recording(self) -> dict[str, Any]:
        """Everything but the seed lists: what must match for two specs to share a dataset folder."""
        d = asdict(self)
        del d["train_seeds"], d["val_seeds"]
        return d

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train_seeds"], d["val_seeds"] = list(self.train_seeds), list(self.val_seeds)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown DatasetSpec keys {unknown}; known: {sorted(known)}")
        return cls(**data)


# ----------------------------------------------------------------------------------------------------
# Index and building
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeEntry:
    """One recorded episode of a dataset: its split, world seed, compact folder (relative to the dataset
    root), steps, queries (all, and seen ones) and how long it took to record (s)."""

    split: str
    seed: int
    path: str
    steps: int
    queries: int
    seen_queries: int
    record_s: float | None = None  # None: found finished on disk, not recorded by this build


@dataclass(frozen=True)
class DatasetIndex:
    """A dataset folder's `dataset.json`: its spec and the episodes recorded so far."""

    root: Path
    spec: DatasetSpec
    episodes: tuple[EpisodeEntry, ...] = field(default_factory=tuple)

    def entries(self, split: str) -> list[EpisodeEntry]:
        """The recorded episodes of a split, in seed order of the spec."""
        order = {s: i for i, s in enumerate(self.spec.seeds(split))}
        found = [e for e in self.episodes if e.split == split and e.seed in order]
        return sorted(found, key=lambda e: order[e.seed])

    def paths(self, split: str) -> list[Path]:
        """Absolute compact-episode folders of a split."""
        return [self.root / e.path for e in self.entries(split)]

    def missing(self) -> list[tuple[str, int]]:
        """(split, seed) pairs of the spec that have no recorded episode yet."""
        have = {(e.split, e.seed) for e in self.episodes}
        return [(s, seed) for s in SPLITS for seed in self.spec.seeds(s) if (s, seed) not in have]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DATASET_FORMAT,
            "format_version": DATASET_VERSION,
            "spec": self.spec.to_dict(),
            "episodes": [asdict(e) for e in self.episodes],
        }

    def write(self) -> Path:
        """Write `dataset.json` atomically (a temporary file renamed over the old one)."""
        path = self.root / DATASET_INDEX
        write_file_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=False).encode())
        return path


def open_dataset(root: str | Path) -> DatasetIndex:
    """Read a dataset folder's index."""
    root = Path(root)
    try:
        doc = json.loads((root / DATASET_INDEX).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{root} is not a memory dataset: {exc}") from exc
    if doc.get("format") != DATASET_FORMAT or doc.get("format_version") != DATASET_VERSION:
        raise InvalidInputError(
            f"{root}: format {doc.get('format')!r} v{doc.get('format_version')} is not "
            f"{DATASET_FORMAT!r} v{DATASET_VERSION}"
        )
    episodes = tuple(EpisodeEntry(**e) for e in doc["episodes"])
    return DatasetIndex(root=root, spec=DatasetSpec.from_dict(doc["spec"]), episodes=episodes)


def _merged_index(root: Path, spec: DatasetSpec) -> DatasetIndex:
    """The index to build into: a new one, or the existing one with `spec`'s seeds added (ConfigError if
    the folder was recorded with other settings)."""
    if not (root / DATASET_INDEX).is_file():
        return DatasetIndex(root=root, spec=spec)
    old = open_dataset(root)
    if old.spec.recording() != spec.recording():
        raise ConfigError(
            f"{root} holds a dataset recorded with {old.spec.recording()}, not {spec.recording()}; "
            "use another output folder"
        )
    train = old.spec.train_seeds + tuple(s for s in spec.train_seeds if s not in old.spec.train_seeds)
    val = old.spec.val_seeds + tuple(s for s in spec.val_seeds if s not in old.spec.val_seeds)
    merged = DatasetSpec(**{**asdict(spec), "train_seeds": train, "val_seeds": val})
    return DatasetIndex(root=root, spec=merged, episodes=old.episodes)


def _episode_dir(split: str, seed: int) -> str:
    return f"{split}/seed_{seed:05d}"


def _entry_from_disk(root: Path, split: str, seed: int, record_s: float | None) -> EpisodeEntry:
    """The index entry of a recorded episode, read from its arrays."""
    rel = f"{_episode_dir(split, seed)}/compact"
    episode = EpisodeArrays.load(root / rel)
    return EpisodeEntry(
        split=split,
        seed=seed,
        path=rel,
        steps=episode.num_steps,
        queries=episode.num_queries,
        seen_queries=int(episode.query_seen.sum()),
        record_s=None if record_s is None else round(record_s, 2),
    )


def _record(spec: DatasetSpec, root: Path, split: str, seed: int) -> float:
    """Record one episode (compact only) into its folder; returns the wall time (s)."""
    from spatial_memory.sim.odometry import WheelOdometryConfig
    from spatial_memory.sim.world_episode import record_world_episode

    folder = root / _episode_dir(split, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".compact.partial-*"):  # a build killed mid-episode (one builder at a time)
        log.warning("removing the unfinished recording %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    result = record_world_episode(
        folder,
        spec.steps,
        seed=seed,
        world=spec.preset,
        width=spec.width,
        height=spec.height,
        rate_hz=float(spec.rate_hz),
        formats=("compact",),
        queries_every=spec.queries_every,
        query_min_age_steps=spec.query_min_age_steps,
        odometry=WheelOdometryConfig(seed=seed),
        depth_dtype=spec.depth_dtype,
        progress=False,
    )
    return result.wall_time_s


def build_dataset(spec: DatasetSpec, out_dir: str | Path, progress: bool = True) -> DatasetIndex:
    """Record every episode of `spec` into `out_dir` that is not there yet; returns the index.

    Resumable: episodes already in the index (or finished on disk before a crash) are skipped, the index is
    rewritten atomically after each episode, and adding seeds to an existing folder with the same recording
    settings extends it. Only one build may write to a folder at a time.
    """
    if not isinstance(spec, DatasetSpec):
        raise ConfigError(f"spec must be a DatasetSpec, got {type(spec).__name__}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    index = _merged_index(root, spec)
    index.write()
    todo = index.missing()
    log.info("dataset %s: %d episodes recorded, %d to record", root, len(index.episodes), len(todo))
    for split, seed in tqdm(todo, desc="episodes", unit="episode", disable=not progress):
        done = root / _episode_dir(split, seed) / "compact" / COMPACT_INDEX
        record_s = None if done.is_file() else _record(spec, root, split, seed)
        entry = _entry_from_disk(root, split, seed, record_s)
        if entry.seen_queries == 0:
            log.warning("%s seed %d has no seen query", split, seed)
        index = DatasetIndex(root=root, spec=index.spec, episodes=(*index.episodes, entry))
        index.write()
    return index


# ----------------------------------------------------------------------------------------------------
# Reading one episode (numpy)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EpisodeArrays:
    """One episode as arrays for the memory (numpy only; images memory-mapped unless loaded into RAM).

    rgb: (T, H, W, 3) uint8 head-camera images.
    odometry: (T, 3) float64 noisy wheel-odometry increments (dx m, dy m, dyaw rad; row 0 zero).
    true_odometry: (T, 3) the same from the ground-truth base poses (for diagnostics, not for models).
    T_world_base: (T, 4, 4) ground-truth base poses.
    query_step: (Q,) int64 step of each query (ascending); query_rgb (Q, h, w, 3) uint8;
    query_target: (Q, 3) planar answer (x, y, yaw) of `T_base_query` (Q, 4, 4); query_seen (Q,) bool;
    query_overlap (Q,) fraction of the query seen before.
    """

    path: Path
    rgb: np.ndarray
    odometry: np.ndarray
    true_odometry: np.ndarray
    T_world_base: np.ndarray
    query_step: np.ndarray
    query_rgb: np.ndarray
    T_base_query: np.ndarray
    query_target: np.ndarray
    query_seen: np.ndarray
    query_overlap: np.ndarray

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True, camera: str = "camera") -> EpisodeArrays:
        """Read a compact episode (its folder, or a recording folder holding `compact/`); `mmap` False
        copies the images into RAM (only those: depth and the other camera are never read)."""
        path = Path(path)
        if not (path / COMPACT_INDEX).is_file() and (path / "compact" / COMPACT_INDEX).is_file():
            path = path / "compact"
        with CompactEpisode(path, mmap=True) as ep:
            images = {k: ep.array(name) for k, name in (("rgb", f"{camera}.rgb"), ("query_rgb", "query_rgb"))}
            T_odom_base, T_world_base = np.array(ep.array("T_odom_base")), np.array(ep.array("T_world_base"))
            T_base_query = np.array(ep.array("T_base_query"))
            episode = cls(
                path=path,
                **(images if mmap else {k: np.array(v) for k, v in images.items()}),
                odometry=odometry_increments(T_odom_base),
                true_odometry=odometry_increments(T_world_base),
                T_world_base=T_world_base,
                query_step=np.array(ep.array("query_step")),
                T_base_query=T_base_query,
                query_target=planar_target(T_base_query),
                query_seen=np.array(ep.array("query_seen"), dtype=bool),
                query_overlap=np.array(ep.array("query_overlap")),
            )
        episode._check()
        return episode

    def _check(self) -> None:
        T, q = self.num_steps, self.query_step
        if self.rgb.ndim != 4 or self.rgb.shape[-1] != 3 or self.rgb.dtype != np.uint8:
            raise InvalidInputError(f"{self.path}: images must be (T, H, W, 3) uint8, got {self.rgb.shape}")
        if len(q) and (q.min() < 0 or q.max() >= T or np.any(np.diff(q) <= 0)):
            raise InvalidInputError(f"{self.path}: query steps must be ascending within [0, {T}), got {q}")
        if not np.all(np.isfinite(self.odometry)):
            raise InvalidInputError(f"{self.path}: the odometry has NaN or infinite values")

    @property
    def num_steps(self) -> int:
        return len(self.rgb)

    @property
    def num_queries(self) -> int:
        return len(self.query_step)

    def queries_in(self, start: int, stop: int) -> np.ndarray:
        """Indices of the queries asked at steps start..stop-1."""
        lo, hi = np.searchsorted(self.query_step, [start, stop])
        return np.arange(lo, hi)


def split_windows(num_steps: int, window: int | None) -> list[tuple[int, int]]:
    """Consecutive (start, stop) windows covering steps 0..num_steps-1; the last may be shorter.

    `window` None (or at least `num_steps`) gives one window of the whole episode.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise InvalidInputError(f"num_steps must be a positive integer, got {num_steps!r}")
    if window is None:
        return [(0, int(num_steps))]
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise InvalidInputError(f"window must be a positive integer or None, got {window!r}")
    return [(s, min(s + int(window), int(num_steps))) for s in range(0, int(num_steps), int(window))]


# ----------------------------------------------------------------------------------------------------
# Torch: windows for truncated backpropagation through time
# ----------------------------------------------------------------------------------------------------


def _chw(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> contiguous (N, 3, H, W) uint8 tensor (a copy: the source may be a memmap)."""
    return torch.from_numpy(np.array(np.moveaxis(np.asarray(images), -1, -3), order="C"))


class SequenceDataset(torch.utils.data.Dataset):
    """Windows of episodes for TBPTT: item i is window w of episode e, in (episode, window) order.

    Each item is a dict:
      rgb (W, 3, H, W) uint8; odometry (W, 3) float32 noisy increments (row 0 of a window that is not
      the first is the real motion since the previous window's last step; of the first, zero);
      query_index (Q,) int64 step of each query within the window; query_rgb (Q, 3, h, w) uint8;
      query_target (Q, 3) float32 (x, y, yaw); query_seen (Q,) bool;
      episode, start (ints) and first (bool: the window starts the episode, so the memory resets).
    `in_memory` reads every episode's images into RAM once (a 200-step 64x64 episode is 2.5 MB).
    """

    def __init__(self, episodes: Sequence[str | Path], window: int | None = None, *, in_memory: bool = False):
        if not episodes:
            raise InvalidInputError("a SequenceDataset needs at least one episode")
        self.episodes = [EpisodeArrays.load(p, mmap=not in_memory) for p in episodes]
        self.window = window
        self.windows = [split_windows(ep.num_steps, window) for ep in self.episodes]
        self._items = [(e, w) for e, ws in enumerate(self.windows) for w in range(len(ws))]
        self._first_item = np.cumsum([0] + [len(ws) for ws in self.windows])

    @classmethod
    def from_dataset(
        cls, root: str | Path, split: str, window: int | None = None, *, in_memory: bool = False
    ) -> SequenceDataset:
        """The episodes of one split of a dataset folder."""
        paths = open_dataset(root).paths(split)
        if not paths:
            raise InvalidInputError(f"{root} has no recorded {split!r} episodes")
        return cls(paths, window, in_memory=in_memory)

    def __len__(self) -> int:
        return len(self._items)

    def index(self, episode: int, window: int) -> int:
        """The item index of window `window` of episode `episode`."""
        if not 0 <= window < len(self.windows[episode]):
            raise InvalidInputError(
                f"episode {episode} has {len(self.windows[episode])} windows, not {window}"
            )
        return int(self._first_item[episode]) + window

    def __getitem__(self, i: int) -> dict[str, Any]:
        e, w = self._items[i]
        ep, (start, stop) = self.episodes[e], self.windows[e][w]
        q = ep.queries_in(start, stop)
        return {
            "rgb": _chw(ep.rgb[start:stop]),
            "odometry": torch.from_numpy(ep.odometry[start:stop].astype(np.float32)),
            "query_index": torch.from_numpy(ep.query_step[q] - start),
            "query_rgb": _chw(ep.query_rgb[q]),
            "query_target": torch.from_numpy(ep.query_target[q].astype(np.float32)),
            "query_seen": torch.from_numpy(ep.query_seen[q]),
            "episode": e,
            "start": start,
            "first": start == 0,
        }


def collate_windows(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch windows of equal length: images and odometry stacked (B, W, ...); queries padded to the most
    any window has, with `query_mask` (B, Qmax) True for real queries and `query_index` -1 for padding."""
    lengths = {len(it["odometry"]) for it in items}
    if len(lengths) != 1:
        raise InvalidInputError(f"windows of one batch must have one length, got {sorted(lengths)}")
    b, qmax = len(items), max(len(it["query_index"]) for it in items)
    h, w = max(items, key=lambda it: len(it["query_index"]))["query_rgb"].shape[-2:]
    out: dict[str, Any] = {
        "rgb": torch.stack([it["rgb"] for it in items]),
        "odometry": torch.stack([it["odometry"] for it in items]),
        "query_index": torch.full((b, qmax), -1, dtype=torch.int64),
        "query_rgb": torch.zeros((b, qmax, 3, h, w), dtype=torch.uint8),
        "query_target": torch.zeros((b, qmax, 3), dtype=torch.float32),
        "query_seen": torch.zeros((b, qmax), dtype=torch.bool),
        "query_mask": torch.zeros((b, qmax), dtype=torch.bool),
        "episode": torch.tensor([it["episode"] for it in items]),
        "start": torch.tensor([it["start"] for it in items]),
        "first": torch.tensor([it["first"] for it in items]),
    }
    for k, it in enumerate(items):
        n = len(it["query_index"])
        for name in ("query_index", "query_rgb", "query_target", "query_seen"):
            out[name][k, :n] = it[name]
        out["query_mask"][k, :n] = True
    return out


class TbpttBatchSampler(torch.utils.data.Sampler):
    """Batches for TBPTT: episodes shuffled (deterministically by seed and epoch) into groups of
    `batch_size`; each group yields its windows in order, window 0 of all its episodes, then window 1, ...
    So batch k+1 continues the episodes of batch k and the trainer carries the memory state across them
    (detached), resetting it where `first` is set. The last group may be smaller. All episodes must have
    the same number of windows (a dataset's episodes share one length)."""

    def __init__(self, dataset: SequenceDataset, batch_size: int, *, seed: int = 0, shuffle: bool = True):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        counts = {len(ws) for ws in dataset.windows}
        if len(counts) != 1:
            raise InvalidInputError(f"episodes have different window counts {sorted(counts)}: use one length")
        self.dataset, self.batch_size, self.seed, self.shuffle = dataset, batch_size, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's shuffle (call before iterating, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        groups = -(-len(self.dataset.episodes) // self.batch_size)
        return groups * len(self.dataset.windows[0])

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.dataset.episodes)
        order = np.arange(n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        for g in range(0, n, self.batch_size):
            group = order[g : g + self.batch_size]
            for w in range(len(self.dataset.windows[0])):
                yield [self.dataset.index(int(e), w) for e in group]

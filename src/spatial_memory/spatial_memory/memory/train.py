"""Train a memory model (Kinaema or a baseline) with its image encoder on a dataset of world episodes.

One function, `train(config, out_dir)`, in the spirit of nanoGPT's train.py: the frozen `TrainConfig` holds
every setting, and every checkpoint carries it, so a run folder explains itself.

Truncated backpropagation through time (TBPTT): each episode is cut into windows of `window` steps;
`data.TbpttBatchSampler` yields window 0 of a group of `batch_size` episodes, then window 1 of the same
episodes, ... The memory state is carried from one window to the next (detached: gradients flow within a
window only) and reset to the model's initial state where a window starts its episode. So the memory is
trained on whole episodes while backpropagation only ever spans `window` steps.

Loss of one window: the query loss (`interface.query_loss`: position NLL with the predicted sigma, heading,
seen/not-seen) of every query asked in the window, each answered right after the model took in the query's
step, plus, for Kinaema, `mim_weight` times the masked-image-modelling loss (`Kinaema.mim_loss`) on
`mim_samples` frames from earlier in the same window, reconstructed from the memory `lag` steps later (lag
drawn uniformly from 0..min(mim_max_lag, steps since that frame)). The encoder trains jointly by default;
with `freeze_encoder` it stays at its initial (or loaded) weights and runs without gradients.

Optimiser: AdamW (weight decay on matrices only, as nanoGPT), linear warm-up then cosine decay to
`min_lr_ratio * lr`, gradient-norm clipping. The schedule is a function of the step, so the step is its
whole state.

Run folder (`out_dir`):
    last.pt     model + encoder (registry checkpoint format) + optimiser, RNG states, step, carried memory
                state and the train config, written atomically every `checkpoint_every` steps and at the end;
    best.pt     model + encoder of the best validation query loss so far (no optimiser: small);
    log.jsonl   one JSON record per logged step: step, losses, lr, wall time, and val metrics when evaluated;
    loss.png    train and val curves.
Rerunning with the same config resumes from last.pt (and gives the weights an uninterrupted run would have:
the memory state carried between windows and every RNG are in the checkpoint); a different config in the
same folder is refused.

Validation runs every `eval_every` steps on the held-out worlds of the 'val' split: whole episodes, no
truncation, answering each query after its step; it reports the mean query loss and Mem-RPE
(`metrics.mem_rpe`), and, for scale, the Mem-RPE of the trivial answer "the robot's own pose now" (pose 0).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from spatial_memory.config import from_dict
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.data import SequenceDataset, TbpttBatchSampler, collate_windows, open_dataset
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.interface import HistoryState, MemoryModel, QueryOutput, query_loss
from spatial_memory.memory.kinaema import Kinaema
from spatial_memory.memory.metrics import mem_rpe
from spatial_memory.memory.registry import MODELS, build_model, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

TRAINABLE = ("kinaema", "gru", "ema", "truncated", "full")  # 'keyframes' has nothing to train
LAST, BEST, LOG, PLOT = "last.pt", "best.pt", "log.jsonl", "loss.png"


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; stored in its checkpoints, and compared on resume.

    A 'step' is one optimiser update on one batch of windows (batch_size episodes x window steps); an epoch
    is ceil(train episodes / batch_size) * (episode steps / window) steps.
    """

    # dataset folder (data.build_dataset): 'train' split to fit, 'val' split to validate; several folders
    # (e.g. house and apartment tours) joined by os.pathsep train on all their episodes together
    data: str = ""
    model: str = "kinaema"  # registry name: kinaema, gru, ema, truncated, full
    model_overrides: dict[str, Any] = field(default_factory=dict)  # fields of the model's config
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # image_size must match the dataset
    window: int = 25  # TBPTT window, steps; gradients span one window
    batch_size: int = 8  # episodes per batch
    steps: int = 2000  # optimiser steps in all
    lr: float = 1e-3  # peak learning rate
    warmup_steps: int = 100  # linear warm-up from lr / warmup_steps
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    weight_decay: float = 0.05  # AdamW, matrices only
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    mim_weight: float | None = None  # Kinaema only; None: the model config's mim_weight
    mim_samples: int = 2  # MIM reconstructions per window (each over the whole batch)
    freeze_encoder: bool = False  # keep the encoder fixed (no gradients): cheaper, usually worse
    seed: int = 0  # weights, data order, MIM masks
    eval_every: int = 200  # validate every N steps (and at the end); 0 = only at the end
    eval_episodes: int = 0  # validate on the first N val episodes; 0 = all
    checkpoint_every: int = 100  # write last.pt every N steps (and at the end)
    log_every: int = 10  # write a log.jsonl record every N steps
    threads: int = 2  # torch intra-op threads
    device: str = "cpu"  # torch device: 'cpu', 'cuda', 'cuda:1', ...; checkpoints are always saved for CPU
    init_from: str = ""  # a checkpoint whose weights start the run (fine-tuning); "": fresh, from seed

    def __post_init__(self) -> None:
        if self.model not in TRAINABLE:
            raise ConfigError(f"model must be one of {TRAINABLE}, got {self.model!r}")
        if not isinstance(self.model_overrides, Mapping):
            raise ConfigError(f"model_overrides must be a mapping, got {type(self.model_overrides).__name__}")
        object.__setattr__(self, "model_overrides", dict(self.model_overrides))
        known = {f.name for f in dataclasses.fields(MODELS[self.model][1])}
        unknown = sorted(set(self.model_overrides) - known)
        if unknown:
            raise ConfigError(f"unknown {self.model} config field(s) {unknown}; known: {sorted(known)}")
        if self.model_overrides.get("pose_mode", "planar") != "planar":
            raise ConfigError("training reads planar (x, y, yaw) targets: pose_mode must be 'planar'")
        if not isinstance(self.encoder, EncoderConfig):
            raise ConfigError(f"encoder must be an EncoderConfig, got {type(self.encoder).__name__}")
        for name in ("window", "batch_size", "steps", "warmup_steps", "log_every", "threads"):
            _check_int(self, name, 1)
        for name in ("mim_samples", "eval_every", "eval_episodes", "checkpoint_every", "seed"):
            _check_int(self, name, 0)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"TrainConfig.device {self.device!r} is not a torch device: {exc}") from exc
        for name in ("lr", "weight_decay", "grad_clip", "min_lr_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"TrainConfig.{name} must be a finite number, got {value!r}")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("TrainConfig: lr must be > 0, weight_decay and grad_clip >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not isinstance(self.init_from, str):
            raise ConfigError(
                f"TrainConfig.init_from must be a checkpoint path or '', got {self.init_from!r}"
            )
        if self.mim_weight is not None and not (math.isfinite(self.mim_weight) and self.mim_weight >= 0):
            raise ConfigError(f"TrainConfig.mim_weight must be >= 0 or None, got {self.mim_weight!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples as lists), as stored in checkpoints."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """From a (nested or dotted) mapping; unknown keys are ConfigErrors."""
        return from_dict(cls, data, where="TrainConfig")


def _check_int(config: TrainConfig, name: str, low: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"TrainConfig.{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class TrainResult:
    """What a run left behind: its folder, the step reached, speed and the last validation."""

    out_dir: Path
    step: int
    wall_s: float  # training wall time over all sessions of this run
    steps_per_s: float  # of this session
    best_val_loss: float
    val: dict[str, Any]  # the last validation (query loss terms, mem_rpe, pose0 baseline)
    model_parameters: int
    encoder_parameters: int


# ---------------------------------------------------------------------------------------------------------
# schedule, optimiser, state helpers


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay from lr to lr * min_lr_ratio at `steps`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    low = config.lr * config.min_lr_ratio
    return low + 0.5 * (config.lr - low) * (1.0 + math.cos(math.pi * progress))


def _optimizer(params: Sequence[torch.nn.Parameter], config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on matrices and convolution kernels only (not on biases, norms, embeddings)."""
    decay = [p for p in params if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in params if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


def _map_state(state: Any, fn: Any) -> Any:
    """Apply `fn` to every tensor of a memory state (a tensor or a HistoryState)."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, HistoryState):
        return HistoryState(frames=fn(state.frames), poses=fn(state.poses), pose=fn(state.pose))
    raise InvalidInputError(f"cannot carry a memory state of type {type(state).__name__}")


def _state_to_dict(state: Any) -> dict[str, Any] | None:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return {"kind": "tensor", "state": state.detach().clone()}
    return {"kind": "history", **{k: getattr(state, k).detach().clone() for k in ("frames", "poses", "pose")}}


def _state_from_dict(data: Mapping[str, Any] | None) -> Any:
    if data is None:
        return None
    if data["kind"] == "tensor":
        return data["state"]
    return HistoryState(frames=data["frames"], poses=data["poses"], pose=data["pose"])


def _planar(pose: Tensor) -> Tensor:
    """(N, 4) planar answers (x, y, sin, cos) -> (N, 3) (x, y, yaw)."""
    return torch.cat([pose[:, :2], torch.atan2(pose[:, 2:3], pose[:, 3:4])], dim=1)


def _cat_outputs(outputs: list[QueryOutput]) -> QueryOutput:
    return QueryOutput(*(torch.cat(parts) for parts in zip(*outputs, strict=True)))


# ---------------------------------------------------------------------------------------------------------
# one window


def _query_positions(mask: Tensor) -> Tensor:
    """(B, Q) bool mask -> (B, Q) index of each real query in the flattened list of real queries (-1 else)."""
    pos = torch.full(mask.shape, -1, dtype=torch.int64, device=mask.device)
    pos[mask] = torch.arange(int(mask.sum()), device=mask.device)
    return pos


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch with its tensors on `device` (a no-op on the CPU)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def run_window(
    model: MemoryModel,
    encoder: ImageEncoder,
    batch: Mapping[str, Any],
    state: Any,
    *,
    mim_samples: int = 0,
    generator: torch.Generator | None = None,
    encode_grad: bool = True,
) -> tuple[Any, QueryOutput | None, Tensor, Tensor, Tensor | None]:
    """Feed one batch of windows (collate_windows) to the model starting from `state`.

    Each query is answered right after the model took in its step. Returns the final state, the answers
    (concatenated over the window, in step order), their targets (N, 3) and seen labels (N,), and the mean
    MIM loss of `mim_samples` reconstructions (None without MIM).
    """
    rgb = batch["rgb"]
    B, W = rgb.shape[:2]
    with torch.set_grad_enabled(encode_grad and torch.is_grad_enabled()):
        frames = encoder(rgb.flatten(0, 1))
        mask = batch["query_mask"]
        query_tokens = encoder(batch["query_rgb"][mask]).tokens if bool(mask.any()) else None
    tokens = frames.tokens.unflatten(0, (B, W))
    positions = _query_positions(mask)
    odometry = batch["odometry"]
    keep_states = mim_samples > 0
    states, outputs, targets, seen = [], [], [], []
    for t in range(W):
        state = model.update(state, tokens[:, t], odometry[:, t])
        if keep_states:
            states.append(state)
        rows, cols = ((batch["query_index"] == t) & mask).nonzero(as_tuple=True)
        if len(rows):
            sub = _map_state(state, lambda x, r=rows: x[r])
            outputs.append(model.query(sub, query_tokens[positions[rows, cols]]))
            targets.append(batch["query_target"][rows, cols])
            seen.append(batch["query_seen"][rows, cols])
    answers = _cat_outputs(outputs) if outputs else None
    target = torch.cat(targets) if targets else torch.zeros(0, 3, device=rgb.device)
    seen_t = torch.cat(seen) if seen else torch.zeros(0, dtype=torch.bool, device=rgb.device)
    mim = None
    if keep_states:
        patches = frames.patches.unflatten(0, (B, W))
        max_lag = model.config.mim_max_lag
        losses = []
        for _ in range(mim_samples):
            t = int(torch.randint(0, W, (1,), generator=generator))
            lag = torch.randint(0, min(max_lag, t) + 1, (B,), generator=generator).to(rgb.device)
            frame = t - lag
            pixels = encoder.patch_pixels(rgb[torch.arange(B), frame])
            picked = patches[torch.arange(B), frame]
            losses.append(model.mim_loss(states[t], picked, pixels, lag, generator=generator))
        mim = torch.stack(losses).mean()
    return state, answers, target, seen_t, mim


# ---------------------------------------------------------------------------------------------------------
# validation


@torch.no_grad()
def evaluate(
    model: MemoryModel, encoder: ImageEncoder, dataset: SequenceDataset, batch_size: int = 8
) -> dict[str, Any]:
    """Validate on whole episodes (one window each): mean query loss terms, Mem-RPE, and the Mem-RPE of the
    trivial answer "my own pose now" (pose 0) for scale. Leaves the modules in eval mode."""
    model.eval()
    encoder.eval()
    if dataset.window is not None and len(dataset.windows[0]) != 1:
        raise InvalidInputError("evaluate needs a dataset of whole episodes (window=None)")
    answers, targets, seen = [], [], []
    device = next(model.parameters()).device
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = to_device(collate_windows(items), device)
        B = batch["rgb"].shape[0]
        _, out, target, seen_b, _ = run_window(model, encoder, batch, model.init_state(B))
        if out is not None:
            answers.append(out)
            targets.append(target)
            seen.append(seen_b)
    if not answers:
        raise InvalidInputError("the validation episodes have no queries")
    out, target, seen_t = _cat_outputs(answers), torch.cat(targets), torch.cat(seen)
    terms = {k: float(v) for k, v in query_loss(out, target, seen_t).items()}
    pred = _planar(out.pose).double().cpu().numpy()
    target_np, seen_np = target.double().cpu().numpy(), seen_t.cpu().numpy()
    seen_prob = torch.sigmoid(out.seen_logit).double().cpu().numpy()
    return {
        "loss": terms,
        "mem_rpe": mem_rpe(pred, target_np, seen_np, seen_prob).to_dict(),
        "pose0_mem_rpe": mem_rpe(np.zeros_like(pred), target_np, seen_np).to_dict(),
        "queries": len(seen_np),
    }


# ---------------------------------------------------------------------------------------------------------
# the run


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _build(config: TrainConfig) -> tuple[MemoryModel, ImageEncoder]:
    """Model and encoder with weights drawn from `config.seed` (the same seed gives the same weights)."""
    _seed_everything(config.seed)
    encoder = ImageEncoder(config.encoder)
    model = build_model(config.model, dict(config.model_overrides), config.encoder)
    if model.config.pose_mode != "planar":
        raise ConfigError("training reads planar (x, y, yaw) targets: pose_mode must be 'planar'")
    if config.init_from:
        _init_weights(config, model, encoder)
    return model, encoder


def _init_weights(config: TrainConfig, model: MemoryModel, encoder: ImageEncoder) -> None:
    """Start from `config.init_from`'s weights (fine-tuning). The run's own model config applies: fields
    that hold no weights (read-out options, write rules) may differ from the checkpoint's. A missing file or
    a shape that differs is a ConfigError, another model or encoder config `load_checkpoint`'s
    InvalidInputError, each naming the checkpoint."""
    path = Path(config.init_from)
    if not path.is_file():
        raise ConfigError(f"TrainConfig.init_from: no checkpoint at {path}")
    ckpt = load_checkpoint(path, expect_model=config.model, expect_encoder_config=config.encoder)
    try:
        model.load_state_dict(ckpt.model.state_dict())
        encoder.load_state_dict(ckpt.encoder.state_dict())
    except RuntimeError as exc:
        raise ConfigError(
            f"TrainConfig.init_from {path}: its weights do not fit this run's model: {exc}"
        ) from exc
    logger.info("initialised %s and its encoder from %s", config.model, path)


def data_folders(config: TrainConfig) -> list[str]:
    """The dataset folders of `config.data` (several joined by os.pathsep)."""
    return [folder for folder in config.data.split(os.pathsep) if folder]


def _check_data(config: TrainConfig) -> None:
    size = config.encoder.image_size
    for folder in data_folders(config):
        spec = open_dataset(folder).spec
        if (spec.width, spec.height) != (size, size):
            raise ConfigError(
                f"{folder} holds {spec.width}x{spec.height} images but encoder.image_size is {size}"
            )


def _episodes(config: TrainConfig, split: str, window: int | None) -> SequenceDataset:
    """One split of every dataset folder, episodes in the folders' order."""
    paths = [path for folder in data_folders(config) for path in open_dataset(folder).paths(split)]
    if not paths:
        raise InvalidInputError(f"{config.data} has no recorded {split!r} episodes")
    return SequenceDataset(paths, window, in_memory=True)


def _config_diff(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    keys = sorted(set(stored) | set(wanted))
    return ", ".join(
        f"{k}: {stored.get(k)!r} in the folder, {wanted.get(k)!r} now"
        for k in keys
        if stored.get(k) != wanted.get(k)
    )


def train(
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
) -> TrainResult:
    """Train `config.model` and its encoder; write checkpoints, log.jsonl and loss.png to `out_dir`.

    resume: continue from out_dir/last.pt when it exists (its train config must equal `config`, else
    ConfigError); False refuses a folder that already holds a run. Returns when `config.steps` are done
    (at once if they already are), or after step `stop_at` with last.pt written (a time-sliced session:
    rerunning resumes; not part of the config, since it does not change what the run computes).
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
    out = Path(out_dir)
    _check_data(config)
    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"TrainConfig.device is {config.device!r} but torch sees no CUDA device here")
    model, encoder = _build(config)
    model.to(device)
    encoder.to(device)
    if config.freeze_encoder:
        encoder.requires_grad_(False)
    params = [*model.parameters(), *encoder.parameters()]
    optimizer = _optimizer(params, config)
    mim_weight = (
        config.mim_weight if config.mim_weight is not None else getattr(model.config, "mim_weight", 0.0)
    )
    mim_samples = config.mim_samples if isinstance(model, Kinaema) and mim_weight > 0 else 0
    generator = torch.Generator().manual_seed(config.seed + 1)

    step, wall_before, best, carry, episodes = 0, 0.0, math.inf, None, None
    last = out / LAST
    if last.is_file():
        if not resume:
            raise ConfigError(f"{out} already holds a run ({LAST}); pass resume=True or use another folder")
        step, wall_before, best, carry, episodes = _resume(last, config, model, encoder, optimizer, generator)
        carry = None if carry is None else _map_state(carry, lambda x: x.to(device))
        _trim_log(out / LOG, step)
        logger.info("resumed %s at step %d of %d", out, step, config.steps)
    out.mkdir(parents=True, exist_ok=True)

    train_set = _episodes(config, "train", config.window)
    lengths = {ep.num_steps for ep in train_set.episodes}
    if len(lengths) != 1:
        raise InvalidInputError(f"training episodes must share one length, got {sorted(lengths)}")
    val_set = _episodes(config, "val", None)
    if config.eval_episodes:
        val_set = SequenceDataset(
            [ep.path for ep in val_set.episodes[: config.eval_episodes]], None, in_memory=True
        )
    sampler = TbpttBatchSampler(train_set, config.batch_size, seed=config.seed)
    per_epoch = len(sampler)
    n_model, n_encoder = model.num_parameters(), sum(p.numel() for p in encoder.parameters())
    logger.info(
        "%s: %d parameters (+ encoder %d); %d train episodes, %d val; %d steps per epoch of windows of %d",
        config.model, n_model, n_encoder, len(train_set.episodes), len(val_set.episodes), per_epoch,
        config.window,
    )  # fmt: skip

    start_step, t0 = step, time.perf_counter()
    val: dict[str, Any] = {}
    running: dict[str, float] = {}
    bar = tqdm(
        total=config.steps, initial=step, desc=f"train {config.model}", unit="step", disable=not progress
    )
    model.train()
    encoder.train(not config.freeze_encoder)
    while step < config.steps and (stop_at is None or step < stop_at):
        epoch, offset = divmod(step, per_epoch)
        sampler.set_epoch(epoch)
        for indices in itertools.islice(iter(sampler), offset, None):
            if step >= config.steps or (stop_at is not None and step >= stop_at):
                break
            batch = to_device(collate_windows([train_set[i] for i in indices]), device)
            carry = _carried(model, batch, carry, episodes)
            episodes = batch["episode"].tolist()
            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            carry, out_q, target, seen, mim = run_window(
                model, encoder, batch, carry, mim_samples=mim_samples, generator=generator,
                encode_grad=not config.freeze_encoder,
            )  # fmt: skip
            terms = query_loss(out_q, target, seen) if out_q is not None else {"total": torch.zeros(())}
            loss = terms["total"] + (mim_weight * mim if mim is not None else 0.0)
            loss = torch.as_tensor(loss)
            optimizer.zero_grad(set_to_none=True)
            grad_norm = torch.zeros(())
            if loss.requires_grad:  # else a window without queries (and no MIM): nothing to learn from
                loss.backward()
                clip = config.grad_clip if config.grad_clip > 0 else math.inf
                grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
                optimizer.step()
            carry = _map_state(carry, Tensor.detach)
            step += 1
            record = {k: v.item() for k, v in terms.items()} | {
                "loss": loss.item(),
                "grad_norm": grad_norm.item(),
            }
            if mim is not None:
                record["mim"] = mim.item()
            for k, v in record.items():
                running[k] = running.get(k, 0.0) + v
            running["n"] = running.get("n", 0) + 1
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.1e}")

            done = step >= config.steps
            pause = stop_at is not None and step >= stop_at and not done
            wall = wall_before + time.perf_counter() - t0
            evaluated = done or (config.eval_every and step % config.eval_every == 0)
            if evaluated:
                val = evaluate(model, encoder, val_set, config.batch_size)
                model.train()
                encoder.train(not config.freeze_encoder)
                score = val["loss"]["total"]
                logger.info(
                    "step %d: val loss %.3f, within 2 m/90 deg %.1f%% (pose 0: %.1f%%), median %.2f m",
                    step, score, val["mem_rpe"]["within_2m_90deg_pct"] or 0.0,
                    val["pose0_mem_rpe"]["within_2m_90deg_pct"] or 0.0,
                    val["mem_rpe"]["median_position_m"] or 0.0,
                )  # fmt: skip
                if score < best:
                    best = score
                    extra = {"train_config": config.to_dict(), "step": step, "val": val, "wall_s": wall}
                    save_checkpoint(out / BEST, model, encoder, extra)
            if evaluated or step % config.log_every == 0:
                n = running.pop("n")
                entry = {"step": step, "lr": lr, "wall_s": round(wall, 2), "epoch": step / per_epoch}
                entry["train"] = {k: v / n for k, v in running.items()}
                running = {}
                if evaluated:
                    entry["val"] = val
                with (out / LOG).open("a") as f:
                    f.write(json.dumps(entry) + "\n")
            if done or pause or (config.checkpoint_every and step % config.checkpoint_every == 0):
                _save_last(
                    out, config, model, encoder, optimizer, generator, step, wall, best, carry, episodes
                )
                plot_log(out / LOG, out / PLOT)
    bar.close()
    if not val:  # the run was finished already
        val = _last_val(out / LOG)
    session_s = time.perf_counter() - t0
    steps_done = step - start_step
    return TrainResult(
        out_dir=out,
        step=step,
        wall_s=wall_before + session_s,
        steps_per_s=steps_done / session_s if steps_done else math.nan,
        best_val_loss=best,
        val=val,
        model_parameters=n_model,
        encoder_parameters=n_encoder,
    )


def _carried(model: MemoryModel, batch: Mapping[str, Any], carry: Any, episodes: list[int] | None) -> Any:
    """The state to start this batch from: fresh where the windows start their episodes, else the carry."""
    first = batch["first"]
    B = len(first)
    if bool(first.all()):
        return model.init_state(B)
    if bool(first.any()) or carry is None or episodes != batch["episode"].tolist():
        raise InvalidInputError("a TBPTT batch must continue exactly the episodes of the previous batch")
    return carry


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
    }


def _save_last(
    out: Path, config: TrainConfig, model: MemoryModel, encoder: ImageEncoder,
    optimizer: torch.optim.Optimizer, generator: torch.Generator, step: int, wall: float, best: float,
    carry: Any, episodes: list[int] | None,
) -> None:  # fmt: skip
    extra = {
        "train_config": config.to_dict(),
        "step": step,
        "wall_s": wall,
        "best_val_loss": best if math.isfinite(best) else None,
        "optimizer": optimizer.state_dict(),
        "rng": _rng_state(generator),
        "carry": _state_to_dict(carry),
        "carry_episodes": episodes,
    }
    save_checkpoint(out / LAST, model, encoder, extra)


def _resume(
    path: Path, config: TrainConfig, model: MemoryModel, encoder: ImageEncoder,
    optimizer: torch.optim.Optimizer, generator: torch.Generator,
) -> tuple[int, float, float, Any, list[int] | None]:  # fmt: skip
    """Load last.pt into the fresh model, encoder, optimiser and RNGs; refuse another config."""
    ckpt = load_checkpoint(path)
    extra = ckpt.extra
    stored = extra.get("train_config") or {}
    wanted = config.to_dict()
    if stored != wanted:
        raise ConfigError(
            f"{path.parent} holds a run with another config ({_config_diff(stored, wanted)}); "
            "use another output folder or the same settings"
        )
    model.load_state_dict(ckpt.model.state_dict())
    encoder.load_state_dict(ckpt.encoder.state_dict())
    optimizer.load_state_dict(extra["optimizer"])
    rng = extra["rng"]
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    np.random.set_state(("MT19937", np.array(rng["numpy"], dtype=np.uint32), rng["numpy_pos"], 0, 0.0))
    best = extra.get("best_val_loss")
    return (
        int(extra["step"]),
        float(extra.get("wall_s", 0.0)),
        math.inf if best is None else float(best),
        _state_from_dict(extra.get("carry")),
        extra.get("carry_episodes"),
    )


def _trim_log(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint a run resumes from (a crash between the two)."""
    if not path.is_file():
        return
    keep = [
        line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step
    ]
    path.write_text("".join(line + "\n" for line in keep))


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a log.jsonl."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _last_val(path: Path) -> dict[str, Any]:
    vals = [r["val"] for r in read_log(path) if "val" in r]
    return vals[-1] if vals else {}


def _number(value: float | None) -> float:
    """A logged metric (None where it was NaN, as MemRpe.to_dict writes it) as a float."""
    return math.nan if value is None else float(value)


def plot_log(log_path: str | Path, png_path: str | Path) -> Path | None:
    """loss.png: train and val loss against step (left), val Mem-RPE against step (right)."""
    records = read_log(log_path)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in records]
    ax.plot(
        steps, [r["train"].get("loss", math.nan) for r in records], label="train loss (query + MIM)", lw=1
    )
    ax.plot(steps, [r["train"].get("total", math.nan) for r in records], label="train query loss", lw=1)
    vals = [r for r in records if "val" in r]
    if vals:
        vs = [r["step"] for r in vals]
        ax.plot(vs, [r["val"]["loss"]["total"] for r in vals], "o-", label="val query loss")
        for key, label in (
            ("within_2m_90deg_pct", "<=2 m, 90 deg"),
            ("within_1m_10deg_pct", "<=1 m, 10 deg"),
        ):
            ax2.plot(vs, [_number(r["val"]["mem_rpe"][key]) for r in vals], "o-", label=label)
            baseline = _number(vals[-1]["val"]["pose0_mem_rpe"][key])
            if math.isfinite(baseline):
                ax2.axhline(baseline, ls="--", lw=0.8, color="grey")
        ax2.set_ylabel("val seen queries within (%)")
        ax2.set_title("val Mem-RPE (dashed: answer 'my own pose now')", fontsize=9)
        ax2.legend(fontsize=8)
    ax.set_xlabel("step")
    ax2.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path

"""The running memory's per-frame path as TorchScript traces: the encoder and the model's update, batch 1.

Why: on the memory's 10 ms per-frame CPU budget most of an update is Python dispatch, not arithmetic - the
encoder and Kinaema's update are a few hundred small tensor operations on 64 tokens. A trace records them
once and replays them without the interpreter (on the project's 2-core VM: encoder 2.2 -> 1.7 ms, Kinaema's
update 2.3 -> 1.5 ms; `benchmarks/bench_memory_service.py --no-trace` measures the difference).

Why tracing is safe here: the engine always calls with batch 1 and the same shapes; every data-dependent
choice in the models (novelty writes, ring evictions, gates) is a tensor operation (`torch.where`, one-hot
masks), not Python control flow, so the trace holds for every input of those shapes. That is checked, not
assumed: `trace_for_inference` replays a short made-up episode (moving and standing still) through the eager
and the traced path and keeps the traces only when they agree. Any other shape goes to the eager modules.
Engines of the same model (same configs and weights: `MemoryEngine`'s hashes) share one trace per process.
A model whose state is not one tensor (the keyframe baseline's growing history) is not traced.

`torch.jit.trace` is deprecated in favour of `torch.export`/`torch.compile`; neither helps here yet (an
exported program runs Kinaema's update slower than eager, 3.1 against 2.3 ms; compiling needs a C++ toolchain
and seconds at start). If a torch release drops tracing, `trace_for_inference` logs why and the engine
runs eagerly.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spatial_memory.memory.encoder import ImageEncoder
from spatial_memory.memory.interface import MemoryModel

__all__ = ["CHECK_STEPS", "TracedPath", "trace_for_inference"]

logger = logging.getLogger(__name__)

CHECK_STEPS = 12  # made-up frames the traces must reproduce (a third of them standing still)
_TOLERANCE = 1e-4  # absolute, on states of magnitude ~1 (the step counters are exact integers)
_CACHE_SIZE = 4  # models traced per process, by identity (tracing one takes ~0.3 s)
_CACHE: dict[Hashable, TracedPath | None] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class TracedPath:
    """Traced encoder and model update for inputs of the traced shapes; eager modules for anything else."""

    encoder: ImageEncoder
    model: MemoryModel
    traced_encoder: Any  # torch.jit.ScriptModule: (1, 3, S, S) uint8 -> (tokens, patches)
    traced_update: Any  # ScriptMethod: (state, tokens, odometry) -> state
    image_shape: tuple[int, ...]
    state_shape: tuple[int, ...]
    token_shape: tuple[int, ...]

    def encode(self, image: Tensor) -> Tensor:
        """The image's tokens (B, K, D), as `encoder(image).tokens`."""
        if tuple(image.shape) == self.image_shape and image.dtype == torch.uint8:
            return self.traced_encoder(image)[0]
        return self.encoder(image).tokens

    def update(self, state: Tensor, tokens: Tensor, odometry: Tensor) -> Tensor:
        """The next state, as `model.update(state, tokens, odometry)` (inputs checked the same way)."""
        self.model.check_update(state, tokens, odometry)
        odometry = odometry.to(tokens.dtype)
        if (
            isinstance(state, Tensor)
            and tuple(state.shape) == self.state_shape
            and tuple(tokens.shape) == self.token_shape
            and tuple(odometry.shape) == (1, 3)
        ):
            return self.traced_update(state, tokens, odometry)
        return self.model._update(state, tokens, odometry)


def trace_for_inference(
    model: MemoryModel, encoder: ImageEncoder, device: torch.device, identity: Hashable | None = None
) -> TracedPath | None:
    """Trace `encoder` and `model`'s update for batch 1 and check them against the eager modules on a short
    made-up episode; None (logged) when the model's state is not a tensor, tracing fails or the traces
    disagree. `identity`: what makes two models compute the same (e.g. hashes of the configs and weights);
    a model already traced in this process under it reuses those traces (engines of one checkpoint)."""
    key = None if identity is None else (identity, str(device))
    with _CACHE_LOCK:
        known, cached = key in _CACHE, _CACHE.get(key)
    if known:
        return None if cached is None else dataclasses.replace(cached, encoder=encoder, model=model)
    path = _trace_and_check(model, encoder, device)
    if key is not None:
        with _CACHE_LOCK:
            _CACHE[key] = path
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
    return path


def _trace_and_check(model: MemoryModel, encoder: ImageEncoder, device: torch.device) -> TracedPath | None:
    """`trace_for_inference` without the cache."""
    with torch.no_grad():
        state = model.init_state(1)
        if not isinstance(state, Tensor):
            return None
        size = encoder.config.image_size
        images, odometry = _episode(size, device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecation and tracer notes: the replay below decides
                traced_encoder = torch.jit.trace(encoder, images[0], strict=False, check_trace=False)
                tokens = encoder(images[0]).tokens
                traced_model = torch.jit.trace_module(
                    model, {"_update": (state, tokens, odometry[0])}, check_trace=False
                )
        except Exception as exc:  # noqa: BLE001 - tracing raises many types; eager always works
            logger.info("the memory runs eagerly: tracing %s failed (%s)", model.name, exc)
            return None
        path = TracedPath(
            encoder, model, traced_encoder, traced_model._update, tuple(images[0].shape), tuple(state.shape),
            tuple(tokens.shape),
        )  # fmt: skip
        gap = _replay_gap(path, state, images, odometry)
    if not gap <= _TOLERANCE:
        logger.warning(
            "the traced %s differs from the eager one by %.3g on a made-up episode: running eagerly",
            model.name,
            gap,
        )
        return None
    return path


def _episode(size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """CHECK_STEPS random (1, 3, S, S) uint8 images and (1, 3) odometry steps; in the middle third the robot
    stands still and sees the same image."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (CHECK_STEPS, 1, 3, size, size), dtype=torch.uint8, generator=g)
    odometry = (torch.rand(CHECK_STEPS, 1, 3, generator=g) - 0.5) * torch.tensor([0.6, 0.6, 1.0])
    third = CHECK_STEPS // 3
    odometry[third : 2 * third] = 0.0  # standing still before an unchanged view: novelty writes nothing
    images[third : 2 * third] = images[third - 1]
    return images.to(device), odometry.to(device)


def _replay_gap(path: TracedPath, state: Tensor, images: Tensor, odometry: Tensor) -> float:
    """Largest absolute difference between the eager and the traced path over the made-up episode (tokens
    and states), inf when either is not finite."""
    eager, traced, gap = state, state, 0.0
    for image, step in zip(images, odometry, strict=True):
        tokens = path.encoder(image).tokens
        fast = path.traced_encoder(image)[0]
        eager = path.model._update(eager, tokens, step)
        traced = path.traced_update(traced, tokens, step)
        for a, b in ((tokens, fast), (eager, traced)):
            if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
                return float("inf")
            gap = max(gap, float((a - b).abs().max()))
    return gap

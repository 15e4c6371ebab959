"""Build memory models by name, and save/load checkpoints that carry their configs with their weights.

A checkpoint is one torch file (read back with `weights_only=True`) holding the model's name, its config and
the encoder's config as plain dicts, both state dicts, and the caller's `extra` (plain data: step, metrics).
Loading rebuilds the exact model from the stored configs, so a checkpoint is never paired with the wrong
architecture; a caller that expects a particular model or config says so and anything else is refused.
Writes are atomic (temp file + rename): a crash mid-save leaves the previous checkpoint intact.

Integrity: torch does not verify its zip's CRCs, so a flipped byte in a tensor loads silently. Every file
written here (checkpoints, and the engine's memory states through `seal` / `read_versioned`) carries a
SHA-256 of its whole content (`payload_digest`: every key, number, string and tensor byte), checked at load;
a mismatch is refused naming the file. Files of the previous version (1, before checksums) still load, with
a warning that they cannot be verified. Weights that are NaN or infinite are refused at load too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from spatial_memory.atomic import write_file_atomic
from spatial_memory.config import from_dict
from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.baselines import (
    EMAConfig,
    EMAMemory,
    FullHistoryTransformer,
    GRUConfig,
    GRUMemory,
    HistoryTransformerConfig,
    KeyframeConfig,
    KeyframeRetrieval,
    TruncatedHistoryConfig,
    TruncatedHistoryTransformer,
)
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder, nonfinite_entries, state_dict_mismatch
from spatial_memory.memory.interface import MemoryConfig, MemoryModel
from spatial_memory.memory.kinaema import Kinaema, KinaemaConfig

logger = logging.getLogger(__name__)

FORMAT = "spatial_memory.memory_checkpoint"
VERSION = 2  # 2: sealed with a checksum; 1 (unsealed) still loads
CHECKSUM_KEY = "checksum"  # the payload's SHA-256 (`payload_digest`), stored inside it
UNSEALED_VERSION = 1  # checkpoints and memory states written before checksums

MODELS: dict[str, tuple[type[MemoryModel], type[MemoryConfig]]] = {
    "kinaema": (Kinaema, KinaemaConfig),
    "gru": (GRUMemory, GRUConfig),
    "ema": (EMAMemory, EMAConfig),
    "truncated": (TruncatedHistoryTransformer, TruncatedHistoryConfig),
    "full": (FullHistoryTransformer, HistoryTransformerConfig),
    "keyframes": (KeyframeRetrieval, KeyframeConfig),
}


def encoder_fields(config_cls: type[MemoryConfig], encoder: EncoderConfig) -> dict[str, int]:
    """The memory-config fields the encoder decides (token width and count; Kinaema's MIM patch sizes)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    fields = {
        "token_dim": encoder.token_dim,
        "tokens_per_frame": encoder.tokens_per_frame,
        "num_patches": encoder.num_patches,
        "patch_pixel_dim": encoder.patch_pixel_dim,
    }
    return {k: v for k, v in fields.items() if k in names}


def check_compatible(config: MemoryConfig, encoder: EncoderConfig) -> None:
    """Raise ConfigError if the memory config does not read what this encoder writes."""
    for key, want in encoder_fields(type(config), encoder).items():
        if getattr(config, key) != want:
            raise ConfigError(
                f"{type(config).__name__}.{key} = {getattr(config, key)} but the encoder gives {want}"
            )


def build_model(
    name: str,
    config: MemoryConfig | Mapping[str, Any] | None = None,
    encoder_config: EncoderConfig | None = None,
    **overrides: Any,
) -> MemoryModel:
    """A fresh model by registry name ('kinaema', 'gru', 'ema', 'truncated', 'full', 'keyframes').

    config: a config instance, a plain (possibly nested/dotted) mapping, or None for the defaults; overrides
    are applied on top. With encoder_config, the encoder-derived fields are filled in (and checked).
    """
    if name not in MODELS:
        raise ConfigError(f"unknown memory model {name!r}; known: {sorted(MODELS)}")
    model_cls, config_cls = MODELS[name]
    if isinstance(config, MemoryConfig):
        if type(config) is not config_cls:
            raise ConfigError(f"model {name!r} takes a {config_cls.__name__}, got {type(config).__name__}")
        config = dataclasses.replace(config, **overrides) if overrides else config
    else:
        fields = {**dict(config or {}), **overrides}
        if encoder_config is not None:
            for key, value in encoder_fields(config_cls, encoder_config).items():
                fields.setdefault(key, value)
        config = from_dict(config_cls, fields, where=name)
    if encoder_config is not None:
        check_compatible(config, encoder_config)
    return model_cls(config)


class Checkpoint(NamedTuple):
    model: MemoryModel
    encoder: ImageEncoder | None
    extra: dict[str, Any]


def save_checkpoint(
    path: str | Path,
    model: MemoryModel,
    encoder: ImageEncoder | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write model (+ encoder) weights and configs to `path` atomically; `extra` must be plain data."""
    if not isinstance(model, MemoryModel) or model.name not in MODELS:
        raise InvalidInputError(f"not a registered memory model: {type(model).__name__}")
    if encoder is not None:
        check_compatible(model.config, encoder.config)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.name,
        "model_config": dataclasses.asdict(model.config),
        "model_state": model.state_dict(),
        "encoder_config": dataclasses.asdict(encoder.config) if encoder is not None else None,
        "encoder_state": encoder.state_dict() if encoder is not None else None,
        "extra": dict(extra or {}),
    }
    write_file_atomic(Path(path), _serialise(seal(payload)))
    logger.info("saved %s checkpoint to %s", model.name, path)


def load_checkpoint(
    path: str | Path,
    expect_model: str | None = None,
    expect_config: MemoryConfig | None = None,
    expect_encoder_config: EncoderConfig | None = None,
    model_overrides: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Rebuild model (+ encoder) from a checkpoint, in eval mode; refuse models/configs not expected.

    `model_overrides` replaces config fields that hold no weights (e.g. Kinaema's `recall_write`) before the
    weights are loaded: the same trained model run under another rule, for ablations. A field that changes
    the weights' shapes fails the load with the usual clear error."""
    payload = read_versioned(Path(path), FORMAT, VERSION, "checkpoint", legacy_versions=(UNSEALED_VERSION,))
    name = payload.get("model")
    if name not in MODELS:
        raise InvalidInputError(f"{path}: unknown memory model {name!r}")
    if expect_model is not None and name != expect_model:
        raise InvalidInputError(f"{path} holds a {name!r} model, expected {expect_model!r}")
    saved = {**getattr(MODELS[name][1], "ABSENT_MEANS", {}), **_config_dict(payload, "model_config", path)}
    model = build_model(name, saved, **dict(model_overrides or {}))
    if expect_config is not None and model.config != expect_config:
        raise InvalidInputError(f"{path}: {_config_diff(model.config, expect_config)}")
    _load_state(model, payload.get("model_state"), path, "model")
    encoder = None
    if payload.get("encoder_config") is not None:
        encoder = ImageEncoder(from_dict(EncoderConfig, _config_dict(payload, "encoder_config", path)))
        _load_state(encoder, payload.get("encoder_state"), path, "encoder")
        check_compatible(model.config, encoder.config)
        encoder.eval()
    if expect_encoder_config is not None and (encoder is None or encoder.config != expect_encoder_config):
        got = "no encoder" if encoder is None else _config_diff(encoder.config, expect_encoder_config)
        raise InvalidInputError(f"{path}: {got}")
    return Checkpoint(model.eval(), encoder, dict(payload.get("extra") or {}))


def read_versioned(
    path: Path, fmt: str, version: int, what: str, legacy_versions: tuple[int, ...] = ()
) -> dict[str, Any]:
    """The dict torch saved at `path` (weights only), refused unless it says it is `fmt` at `version` and its
    checksum matches its content (`seal`); `what` ('checkpoint', 'memory state') names the file in the
    errors. `legacy_versions`: older versions written without a checksum, read unverified with a warning."""
    if not path.is_file():
        raise InvalidInputError(f"{what} {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise InvalidInputError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise InvalidInputError(f"{path} is not a spatial_memory {what} file")
    got = payload.get("version")
    if got in legacy_versions and not isinstance(got, bool):
        _warn_unverified(path, what, got)
        return payload
    if got != version or isinstance(got, bool):
        readable = ", ".join(str(v) for v in (version, *legacy_versions))
        raise InvalidInputError(f"{path}: {what} version {got!r}, this code reads {readable}")
    _verify(payload, path, what)
    return payload


def seal(payload: Mapping[str, Any]) -> dict[str, Any]:
    """`payload` with its checksum added (`CHECKSUM_KEY`): what `read_versioned` verifies at load."""
    body = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    return {**body, CHECKSUM_KEY: payload_digest(body)}


def payload_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a payload's content, its checksum entry left out: every key and value, tensors by
    dtype, shape and bytes, so any change that survives unpickling changes the digest."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """Add `value` to `digest` unambiguously (type tags and lengths; mappings in sorted key order)."""
    if isinstance(value, Mapping):
        digest.update(b"{%d:" % len(value))
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(b"[%d:" % len(value))
        for item in value:
            _feed(digest, item)
    elif isinstance(value, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(value).detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"T{t.dtype}{tuple(value.shape)}:".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    else:  # numbers, strings, None, dtypes and other plain values the weights-only loader allows
        text = f"{type(value).__name__}={value!r}".encode()
        digest.update(b"%d:" % len(text) + text)


def _verify(payload: dict[str, Any], path: Path, what: str) -> None:
    """Refuse a payload whose stored checksum is missing or does not match its content."""
    stored = payload.get(CHECKSUM_KEY)
    if not isinstance(stored, str):
        raise InvalidInputError(f"{path}: the {what} has no checksum: the file is damaged; not loading it")
    if payload_digest(payload) != stored:
        raise InvalidInputError(
            f"{path}: the {what}'s checksum does not match its content: the file is damaged (a changed or "
            "flipped byte), not loading it; use a good copy"
        )


_WARNED: set[str] = set()


def _warn_unverified(path: Path, what: str, version: Any) -> None:
    """Warn (once per file and process) that a pre-checksum file was read without verification."""
    key = str(Path(path).resolve())
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(
            "%s %s is version %s, written before checksums: its content cannot be verified (save it again "
            "to add one)",
            what,
            path,
            version,
        )


def _config_dict(payload: Mapping[str, Any], key: str, path: str | Path) -> dict[str, Any]:
    value = payload.get(key)
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{path}: {key} is missing")
    return dict(value)


def _load_state(module: torch.nn.Module, state: Any, path: str | Path, what: str) -> None:
    if not isinstance(state, Mapping):
        raise InvalidInputError(f"{path}: {what} weights are missing")
    problems = state_dict_mismatch(module.state_dict(), state)
    if problems:
        raise InvalidInputError(f"{path}: {what} weights do not fit its config: {problems}")
    bad = nonfinite_entries(state)
    if bad:
        raise InvalidInputError(
            f"{path}: {what} weights hold NaN or infinite values ({bad}): a diverged or damaged checkpoint, "
            "not loading it"
        )
    module.load_state_dict(state)


def _config_diff(got: Any, want: Any) -> str:
    if type(got) is not type(want):
        return f"config is a {type(got).__name__}, expected a {type(want).__name__}"
    diffs = [
        f"{f.name}={getattr(got, f.name)!r} (expected {getattr(want, f.name)!r})"
        for f in dataclasses.fields(got)
        if getattr(got, f.name) != getattr(want, f.name)
    ]
    return "config differs: " + ", ".join(diffs)


def _serialise(payload: dict[str, Any]) -> bytes:
    """torch.save bytes of `payload`, refused unless `weights_only` loading can read them back (so `extra`
    must be plain data: numbers, strings, lists, dicts, tensors)."""
    buffer = io.BytesIO()
    try:
        torch.save(payload, buffer)
        buffer.seek(0)
        torch.load(buffer, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickling and the weights-only unpickler raise many types
        raise InvalidInputError(
            f"checkpoint 'extra' must be plain data (numbers, strings, lists, dicts, tensors): {exc}"
        ) from exc
    return buffer.getvalue()

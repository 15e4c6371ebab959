"""build_model by name, and checkpoints that carry their configs: round trip, and refusal of mismatches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.kinaema import KinaemaConfig
from spatial_memory.memory.registry import (
    CHECKSUM_KEY,
    MODELS,
    UNSEALED_VERSION,
    build_model,
    load_checkpoint,
    save_checkpoint,
    seal,
)

SMALL_ENCODER = EncoderConfig(widths=(8, 16, 32), token_dim=32, tokens_per_frame=4, heads=2)


def test_registry_names_and_encoder_fields():
    assert sorted(MODELS) == ["ema", "full", "gru", "keyframes", "kinaema", "truncated"]
    model = build_model("kinaema", {"slots": 8, "dim": 32, "heads": 2}, encoder_config=SMALL_ENCODER)
    assert (model.config.token_dim, model.config.tokens_per_frame, model.config.num_patches) == (32, 4, 64)
    with pytest.raises(ConfigError, match="unknown memory model"):
        build_model("lstm")
    with pytest.raises(ConfigError, match="unknown parameter"):
        build_model("gru", {"hiden": 3})
    with pytest.raises(ConfigError, match="encoder gives"):
        build_model("kinaema", KinaemaConfig(), encoder_config=SMALL_ENCODER)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    encoder = ImageEncoder(SMALL_ENCODER)
    model = build_model("kinaema", {"slots": 8, "dim": 32, "heads": 2}, encoder_config=SMALL_ENCODER)
    path = tmp_path / "ckpt" / "kinaema.pt"
    save_checkpoint(path, model, encoder, extra={"step": 7, "metrics": {"rpe": 0.5}})
    save_checkpoint(path, model, encoder, extra={"step": 8})  # rewritten in place, atomically
    loaded = load_checkpoint(path, expect_model="kinaema", expect_config=model.config)
    assert loaded.extra == {"step": 8} and loaded.encoder.config == SMALL_ENCODER
    assert [p.name for p in path.parent.iterdir()] == ["kinaema.pt"]  # no temp files left
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    model.eval(), encoder.eval()
    with torch.no_grad():
        state = model.update(model.init_state(1), encoder(images).tokens, torch.zeros(1, 3))
        want = model.query(state, encoder(images).tokens)
        state = loaded.model.update(
            loaded.model.init_state(1), loaded.encoder(images).tokens, torch.zeros(1, 3)
        )
        got = loaded.model.query(state, loaded.encoder(images).tokens)
    torch.testing.assert_close(got.pose, want.pose, rtol=0, atol=0)


def test_mismatched_checkpoints_are_refused(tmp_path):
    path = tmp_path / "gru.pt"
    model = build_model("gru", {"hidden": 128})
    save_checkpoint(path, model)
    assert load_checkpoint(path).encoder is None
    with pytest.raises(InvalidInputError, match="expected 'kinaema'"):
        load_checkpoint(path, expect_model="kinaema")
    with pytest.raises(InvalidInputError, match="hidden=128"):
        load_checkpoint(path, expect_config=build_model("gru").config)
    with pytest.raises(InvalidInputError, match="no encoder"):
        load_checkpoint(path, expect_encoder_config=EncoderConfig())
    # weights that do not fit the stored config (a tampered or mixed-up file)
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["hidden"] = 256
    torch.save(seal(payload), path)  # resealed: the checksum passes, the config check must catch it
    with pytest.raises(InvalidInputError, match="do not fit"):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InvalidInputError, match="not a spatial_memory"):
        load_checkpoint(tmp_path / "other.pt")


def test_extra_must_be_plain_data(tmp_path):
    class Local:
        pass

    for bad in (Local(), tmp_path):  # not picklable; picklable but not readable with weights_only
        with pytest.raises(InvalidInputError, match="plain data"):
            save_checkpoint(tmp_path / "x.pt", build_model("keyframes"), extra={"obj": bad})
    assert not (tmp_path / "x.pt").exists()


def test_a_checkpoint_saved_before_novelty_writes_keeps_its_clock_rule(tmp_path):
    """A saved Kinaema config that lacks the novelty fields was trained with clock writes: loading it under
    today's defaults (novelty) must not silently change how it runs."""
    import dataclasses

    from spatial_memory.memory.registry import FORMAT

    old = {"recall": 64, "recall_write": "clock", "slot_update": "always", "recall_confidence": False}
    model = build_model("kinaema", old)
    saved = {k: v for k, v in dataclasses.asdict(model.config).items() if k not in KinaemaConfig.ABSENT_MEANS}
    path = tmp_path / "old.pt"
    payload = {"format": FORMAT, "version": UNSEALED_VERSION, "model": "kinaema", "model_config": saved}
    payload |= {"model_state": model.state_dict(), "encoder_config": None, "encoder_state": None, "extra": {}}
    torch.save(payload, path)
    loaded = load_checkpoint(path).model.config
    assert (loaded.recall_write, loaded.slot_update, loaded.recall_confidence) == ("clock", "always", False)
    assert KinaemaConfig().recall_write == "novelty"  # while new models default to novelty


def _small_checkpoint(path, seed=0):
    torch.manual_seed(seed)
    encoder = ImageEncoder(SMALL_ENCODER)
    model = build_model("kinaema", {"slots": 8, "dim": 32, "heads": 2}, encoder_config=SMALL_ENCODER)
    save_checkpoint(path, model, encoder, extra={"step": 3, "lr": 1e-3})
    return model, encoder


def _same_weights(ckpt, model, encoder) -> bool:
    pairs = [(ckpt.model.state_dict(), model.state_dict()), (ckpt.encoder.state_dict(), encoder.state_dict())]
    return all(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in pairs)


def test_a_flipped_byte_never_loads_silently(tmp_path):
    """Fault injection: one byte flipped anywhere in a checkpoint either fails the load with one clear
    error or changes nothing that is loaded (torch does not check its zip CRCs; the checksum does)."""
    path = tmp_path / "good.pt"
    model, encoder = _small_checkpoint(path)
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for trial, at in enumerate(rng.integers(0, len(data), 40)):
        bad = bytearray(data)
        bad[at] ^= 1 << int(rng.integers(0, 8))
        damaged = tmp_path / f"flip{trial}.pt"
        damaged.write_bytes(bytes(bad))
        try:
            ckpt = load_checkpoint(damaged)
        except InvalidInputError:
            refused += 1
            continue
        assert _same_weights(ckpt, model, encoder), f"byte {at} changed the weights silently"
        assert ckpt.extra == {"step": 3, "lr": 1e-3}
    assert refused >= 30  # nearly every byte of the file is content (weights); the rest is zip padding


def test_a_checkpoint_whose_content_or_checksum_changed_is_refused(tmp_path):
    path = tmp_path / "kinaema.pt"
    _small_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    assert payload["version"] == 2 and len(payload[CHECKSUM_KEY]) == 64
    weight = next(iter(payload["model_state"]))
    payload["model_state"][weight].view(-1)[0] += 1e-3  # a small change to one weight, not resealed
    torch.save(payload, tmp_path / "changed.pt")
    with pytest.raises(InvalidInputError, match=r"changed.pt: the checkpoint's checksum does not match"):
        load_checkpoint(tmp_path / "changed.pt")
    del payload[CHECKSUM_KEY]
    torch.save(payload, tmp_path / "unsealed.pt")
    with pytest.raises(InvalidInputError, match="unsealed.pt: the checkpoint has no checksum"):
        load_checkpoint(tmp_path / "unsealed.pt")


def test_a_checkpoint_written_before_checksums_loads_with_a_warning(tmp_path, caplog):
    path = tmp_path / "v1.pt"
    model, encoder = _small_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    del payload[CHECKSUM_KEY]
    torch.save({**payload, "version": UNSEALED_VERSION}, path)
    with caplog.at_level("WARNING", logger="spatial_memory.memory.registry"):
        assert _same_weights(load_checkpoint(path), model, encoder)
    assert "written before checksums" in caplog.text and "v1.pt" in caplog.text


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("part", ["model_state", "encoder_state"])
def test_nan_or_infinite_weights_are_refused_at_load(tmp_path, bad, part):
    path = tmp_path / "diverged.pt"
    _small_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    name = sorted(k for k, v in payload[part].items() if v.is_floating_point())[0]
    payload[part][name].view(-1)[0] = bad
    torch.save(seal(payload), path)  # a correctly sealed file of a diverged run
    what = part.split("_")[0]
    with pytest.raises(
        InvalidInputError, match=rf"{what} weights hold NaN or infinite values \(\['{name}'\]\)"
    ):
        load_checkpoint(path)

"""build_model by name, and checkpoints that carry their configs: round trip, and refusal of mismatches."""

from __future__ import annotations

import pytest
import torch

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.kinaema import KinaemaConfig
from spatial_memory.memory.registry import MODELS, build_model, load_checkpoint, save_checkpoint

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
    torch.save(payload, path)
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

    from spatial_memory.memory.registry import FORMAT, VERSION

    old = {"recall": 64, "recall_write": "clock", "slot_update": "always", "recall_confidence": False}
    model = build_model("kinaema", old)
    saved = {k: v for k, v in dataclasses.asdict(model.config).items() if k not in KinaemaConfig.ABSENT_MEANS}
    path = tmp_path / "old.pt"
    payload = {"format": FORMAT, "version": VERSION, "model": "kinaema", "model_config": saved}
    payload |= {"model_state": model.state_dict(), "encoder_config": None, "encoder_state": None, "extra": {}}
    torch.save(payload, path)
    loaded = load_checkpoint(path).model.config
    assert (loaded.recall_write, loaded.slot_update, loaded.recall_confidence) == ("clock", "always", False)
    assert KinaemaConfig().recall_write == "novelty"  # while new models default to novelty

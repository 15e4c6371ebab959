"""Mem-RPE evaluation: every model on the same queries, a perfect model scores 100%, JSON report, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spatial_memory import cli
from spatial_memory.errors import InvalidInputError
from spatial_memory.memory.data import EpisodeArrays
from spatial_memory.memory.encoder import EncoderConfig, ImageEncoder
from spatial_memory.memory.evaluate import (
    HERE,
    HereBaseline,
    episode_paths,
    episodes_for,
    evaluate,
    head_camera_offset,
    load_models,
    mem_rpe_report,
    planar_answers,
    scored_queries,
    swap_order,
    untrained_encoder,
    write_report,
)
from spatial_memory.memory.interface import MemoryConfig, MemoryModel, QueryOutput
from spatial_memory.memory.poses import planar_target
from spatial_memory.memory.registry import build_model, save_checkpoint

SEEDS = (1000, 1001)
STEPS = 30
SIZE = 32
SMALL_ENCODER = EncoderConfig(image_size=SIZE, widths=(8, 16, 32), token_dim=32, tokens_per_frame=4, heads=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache folder holding two tiny recorded room episodes (recorded once for the module)."""
    root = tmp_path_factory.mktemp("eval_cache")
    episode_paths(SEEDS, STEPS, "room", (SIZE, SIZE), cache_dir=root, progress=False)
    return root


@pytest.fixture(scope="module")
def episodes(cache):
    return episodes_for(SEEDS, STEPS, "room", (SIZE, SIZE), cache_dir=cache, progress=False)


class Oracle(MemoryModel):
    """Test double: answers every query with its ground truth (fed in the order they will be asked)."""

    name = "oracle"

    def __init__(self, targets: np.ndarray, seen: np.ndarray) -> None:
        super().__init__()
        self.config = MemoryConfig(token_dim=8, tokens_per_frame=2)
        self.answers = list(zip(targets.tolist(), seen.tolist(), strict=True))

    def init_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 1)

    def _update(self, state, tokens, odometry):
        return state

    def _query(self, state, query_tokens):
        (x, y, yaw), seen = self.answers.pop(0)
        pose = torch.tensor([[x, y, math.sin(yaw), math.cos(yaw)]], dtype=torch.float64)
        return QueryOutput(pose, torch.zeros(1), torch.tensor([20.0 if seen else -20.0]))


def _small_kinaema():
    torch.manual_seed(0)
    model = build_model("kinaema", {"slots": 8, "dim": 32, "heads": 2}, SMALL_ENCODER).eval()
    return model, ImageEncoder(SMALL_ENCODER).eval()


def test_every_model_answers_the_same_queries(episodes):
    encoder = untrained_encoder(SIZE)
    keyframes = build_model("keyframes", None, encoder.config, camera_offset=head_camera_offset(episodes[0]))
    models = {HERE: (HereBaseline(), None), "keyframes": (keyframes, encoder), "kinaema": _small_kinaema()}
    rows = evaluate(models, episodes, STEPS, progress=False)
    assert list(rows) == [HERE, "keyframes", "kinaema"]
    total = sum(ep.num_queries for ep in episodes)
    seen = sum(int(ep.query_seen.sum()) for ep in episodes)
    assert total > 0 and seen > 0
    for row in rows.values():
        assert (row.seen_count, row.unseen_count) == (seen, total - seen)
        assert 0.0 <= row.within_2m_90deg_pct <= 100.0 and math.isfinite(row.median_position_m)
    assert rows[HERE].seen_false_alarm_pct == 0.0  # 'here' says 'seen' to everything
    if total > seen:
        assert rows[HERE].unseen_detected_pct == 0.0


def test_a_model_that_knows_the_answers_scores_100(episodes):
    q = [scored_queries(ep, STEPS) for ep in episodes]
    targets = np.concatenate([ep.query_target[i] for ep, i in zip(episodes, q, strict=True)])
    seen = np.concatenate([ep.query_seen[i] for ep, i in zip(episodes, q, strict=True)])
    row = evaluate({"oracle": (Oracle(targets, seen), None)}, episodes, STEPS, progress=False)["oracle"]
    assert row.within_1m_10deg_pct == row.within_1m_90deg_pct == row.within_2m_90deg_pct == 100.0
    assert row.median_position_m == pytest.approx(0.0, abs=1e-9)
    assert row.median_heading_deg == pytest.approx(0.0, abs=1e-6)
    assert row.seen_false_alarm_pct == 0.0
    assert row.unseen_detected_pct == 100.0 or (row.unseen_count == 0 and math.isnan(row.unseen_detected_pct))


def test_only_queries_before_T_count(episodes):
    short = 22
    rows = evaluate({HERE: (HereBaseline(), None)}, episodes, short, progress=False)
    want = sum(int((ep.query_step < short).sum()) for ep in episodes)
    assert rows[HERE].seen_count + rows[HERE].unseen_count == want
    with pytest.raises(InvalidInputError, match="fewer than T"):
        evaluate({HERE: (HereBaseline(), None)}, episodes, STEPS + 1, progress=False)
    with pytest.raises(InvalidInputError, match="no model"):
        evaluate({}, episodes, STEPS, progress=False)


def test_planar_answers_of_se3_match_the_target_convention():
    T = np.eye(4)
    yaw = 0.7  # a level camera (optical z forward) turned by yaw: its optical axis heads at yaw
    R_base_opt = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    Rz = np.array(
        [[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]]
    )
    T[:3, :3], T[:3, 3] = Rz @ R_base_opt, (1.0, -2.0, 0.5)
    six = np.concatenate([T[:3, 3], T[:3, 0], T[:3, 1]])[None]
    out = QueryOutput(torch.tensor(six), torch.zeros(1), torch.zeros(1))
    np.testing.assert_allclose(planar_answers(out)[0], planar_target(T), atol=1e-9)
    assert planar_target(T)[2] == pytest.approx(yaw)
    here = HereBaseline().query(HereBaseline().init_state(2), torch.zeros(2, 8, 128))
    np.testing.assert_allclose(planar_answers(here), np.zeros((2, 3)))


def test_report_json_and_markdown(episodes, tmp_path):
    models, origin = load_models(["keyframes"], SIZE, head_camera_offset(episodes[0]))
    report, rows = mem_rpe_report(models, episodes, SEEDS, STEPS, origin, progress=False)
    out = write_report(report, tmp_path / "r" / "mem_rpe.json")
    doc = json.loads(out.read_text())  # strict JSON: NaN would have been refused on write
    assert doc["length"] == STEPS and doc["seeds"] == list(SEEDS)
    assert list(doc["models"]) == [HERE, "keyframes"]
    assert doc["queries"]["total"] == sum(ep.num_queries for ep in episodes)
    assert "UNTRAINED" in doc["models"]["keyframes"]["source"]
    assert {"cpu", "cores", "torch"} <= set(doc["machine"]) and doc["date_utc"]
    assert "| keyframes |" in out.with_suffix(".md").read_text()
    # picture control: 'here' never looks at the picture, retrieval does
    here, keyframes = (doc["models"][k]["picture_control"] for k in (HERE, "keyframes"))
    assert here["median_answer_shift_m"] == 0.0
    pose_keys = ("within_1m_10deg_pct", "within_1m_90deg_pct", "within_2m_90deg_pct", "median_position_m")
    for key in pose_keys:
        assert here["swapped_mem_rpe"][key] == doc["models"][HERE]["metrics"][key]
    assert keyframes["median_answer_shift_m"] > 0.0
    assert "another query's picture" in out.with_suffix(".md").read_text()


def test_swap_order_pairs_each_query_with_another():
    for n in range(2, 12):
        order = swap_order(n)
        assert sorted(order.tolist()) == list(range(n))  # a permutation ...
        assert (order != np.arange(n)).all()  # ... with no query asked with its own picture
    assert swap_order(0).size == 0


def test_cli_end_to_end(cache, tmp_path, capsys):
    ckpt = tmp_path / "tiny_kinaema.pt"
    save_checkpoint(ckpt, *_small_kinaema())
    out = tmp_path / "mem_rpe.json"
    argv = ["eval", "mem-rpe", "--seeds", "1000-1001", "--length", str(STEPS), "--preset", "room"]
    argv += ["--resolution", f"{SIZE}x{SIZE}", "--cache", str(cache), "--no-progress", "--out", str(out)]
    assert cli.main([*argv, "--models", "keyframes", str(ckpt)]) == 0
    doc = json.loads(out.read_text())
    assert list(doc["models"]) == [HERE, "keyframes", "tiny_kinaema"]
    counts = {(m["metrics"]["seen_count"], m["metrics"]["unseen_count"]) for m in doc["models"].values()}
    assert len(counts) == 1
    printed = capsys.readouterr().out
    assert "| tiny_kinaema |" in printed and "| here |" in printed
    # episodes found in a dataset folder given by --data (the cache folder is one) are used as they are
    data = str(cache / f"room_{SIZE}x{SIZE}_T{STEPS}")
    other = ["--data", data, "--models", "keyframes", "--out", str(tmp_path / "b.json")]
    assert cli.main([*argv[:-2], *other]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["queries"]["total"] == doc["queries"]["total"]
    assert cli.main([*argv, "--models", "no_such_model"]) == 2


def test_calibrate_sigma_fits_the_quantile_of_error_over_sigma(episodes):
    """The factor is the coverage quantile of error / sigma; a model with that sigma_scale covers the asked
    share of the same answers, and calibrating it again asks for no further change."""
    import dataclasses

    from spatial_memory.memory.evaluate import calibrate_sigma

    model, encoder = _small_kinaema()
    with pytest.raises(InvalidInputError, match="too few"):
        calibrate_sigma(model, encoder, episodes, length=STEPS)  # the tiny episodes have few seen queries
    fit = calibrate_sigma(model, encoder, episodes, length=STEPS, coverage=0.6, min_answers=1)
    assert fit["factor"] > 0 and fit["answers"] >= 1
    scaled = build_model("kinaema", dataclasses.replace(model.config, sigma_scale=fit["factor"])).eval()
    scaled.load_state_dict(model.state_dict())
    again = calibrate_sigma(scaled, encoder, episodes, length=STEPS, coverage=0.6, min_answers=1)
    assert again["factor"] == pytest.approx(1.0, rel=1e-4)  # calibrated: nothing left to change
    assert again["coverage_before"] <= 0.6 + 1e-9 and fit["factor"] != pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="coverage"):
        calibrate_sigma(model, encoder, episodes, length=STEPS, coverage=1.0)


def test_episodes_with_older_query_sources_are_kept_apart(tmp_path):
    """Seen queries from views at least N steps old (the revisit scenario's offline row) are other
    episodes: their own cache folder, recorded so, and a dataset recorded with the default age is not
    taken for them."""
    record = dict(cache_dir=tmp_path, progress=False)
    default = episode_paths(SEEDS[:1], 60, "room", (SIZE, SIZE), **record)[0]
    same_but_age = [tmp_path / f"room_{SIZE}x{SIZE}_T60"]  # holds seed 1000 at T = 60, default age
    old = episode_paths(SEEDS[:1], 60, "room", (SIZE, SIZE), same_but_age, query_min_age_steps=40, **record)
    old = old[0]
    assert default.parts[-4] == f"room_{SIZE}x{SIZE}_T60"
    assert old.parts[-4] == f"room_{SIZE}x{SIZE}_T60_age40"  # recorded anew, not taken from the default
    seen_steps = {}
    for name, path in (("default", default), ("old", old)):
        ep = EpisodeArrays.load(path)
        seen_steps[name] = ep.query_step[np.asarray(ep.query_seen, bool)]
    assert seen_steps["old"].size and (seen_steps["old"] >= 40).all()  # a source 40 steps old is needed
    assert (seen_steps["default"] < 40).any()  # with the default age, younger ones are asked too


def test_the_offline_benchmark_answers_as_the_running_engine_does(episodes, tmp_path):
    """The offline numbers are the product's numbers: a recorded episode fed frame by frame to `MemoryEngine`
    (as memory_node feeds it, odometry increments and stamps) answers every query as `run_episode` does."""
    from spatial_memory.memory.engine import EngineConfig, MemoryEngine
    from spatial_memory.memory.evaluate import encode_images, run_episode

    ckpt = tmp_path / "tiny_kinaema.pt"
    save_checkpoint(ckpt, *_small_kinaema())
    engine = MemoryEngine(EngineConfig(checkpoint=str(ckpt), resize="none", threads=1))
    model, encoder = engine.model, engine.encoder
    for ep in episodes:
        q = scored_queries(ep, STEPS)
        assert len(q) > 0
        offline = run_episode(
            model,
            encode_images(encoder, ep.rgb[:STEPS]),
            ep.odometry[:STEPS],
            ep.query_step[q],
            encode_images(encoder, ep.query_rgb[q]),
        )
        engine.reset()
        live, at = [], {int(s): [] for s in ep.query_step[q]}
        for i, s in zip(q, ep.query_step[q], strict=True):
            at[int(s)].append(i)
        for t in range(STEPS):
            engine.update(np.ascontiguousarray(ep.rgb[t]), odometry=ep.odometry[t], stamp_ns=t * 200_000_000)
            for i in at.get(t, ()):
                a = engine.query(np.ascontiguousarray(ep.query_rgb[i]))
                live.append((a.x, a.y, a.yaw, a.sigma_m, a.seen_probability))
        live = np.array(live)
        np.testing.assert_allclose(live[:, :2], offline.pred[:, :2], atol=1e-4)
        yaw_gap = np.angle(np.exp(1j * (live[:, 2] - offline.pred[:, 2])))
        np.testing.assert_allclose(yaw_gap, 0.0, atol=1e-4)
        np.testing.assert_allclose(live[:, 3], offline.sigma, rtol=1e-4)
        np.testing.assert_allclose(live[:, 4], offline.seen_prob, atol=1e-5)

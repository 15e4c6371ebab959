"""MemER keyframe filter: 1-D single linkage (d = 5 frames), median representatives, at most 8 kept."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_memory.config import flatten, from_dict
from spatial_memory.context.config import ContextConfig, KeyframeSelectionConfig, MapConfig
from spatial_memory.context.keyframes import KeyframeSelector, NoveltyNominator
from spatial_memory.errors import ConfigError, InvalidInputError


def reference_clusters(noms: list[int], d: int) -> list[list[int]]:
    """Batch single linkage in 1-D: sort, split where the gap exceeds d."""
    s = sorted(noms)
    out = [[s[0]]]
    for a, b in zip(s, s[1:], strict=False):
        if b - a > d:
            out.append([])
        out[-1].append(b)
    return out


def test_merge_distance_is_inclusive_5_frames():
    sel = KeyframeSelector()
    sel.nominate([10, 15])
    assert [(c.start, c.end) for c in sel.clusters()] == [(10, 15)]
    sel = KeyframeSelector()
    sel.nominate([10, 16])
    assert [(c.start, c.end) for c in sel.clusters()] == [(10, 10), (16, 16)]


def test_single_linkage_chains_and_bridges():
    sel = KeyframeSelector()
    sel.nominate([0, 5, 10, 15])  # each within 5 of the next: one cluster 15 frames long
    assert len(sel) == 1 and sel.clusters()[0].end == 15
    sel = KeyframeSelector()
    sel.nominate([0, 12])
    assert len(sel) == 2
    sel.nominate([6])  # within 5 of neither? 6-0 = 6 > 5: still separate from 0, joins 12? 12-6 = 6: no
    assert len(sel) == 3
    sel.nominate([5])  # links 0 and 6, and 6 links... 12 - 6 = 6: not 12
    assert [(c.start, c.end) for c in sel.clusters()] == [(0, 6), (12, 12)]
    sel.nominate([9])  # bridges (0..6) and 12
    assert [(c.start, c.end) for c in sel.clusters()] == [(0, 12)]


def test_representative_is_the_lower_median_with_repeats():
    sel = KeyframeSelector()
    sel.nominate([10, 12, 12, 12, 14])
    assert sel.keyframes() == [12]
    sel = KeyframeSelector()
    sel.nominate([20, 21, 23, 24])  # even count: the lower median, a nominated frame
    assert sel.keyframes() == [21]


@pytest.mark.parametrize("seed", range(5))
def test_incremental_matches_batch_in_any_order(seed):
    rng = np.random.default_rng(seed)
    noms = rng.integers(0, 300, size=80).tolist()
    sel = KeyframeSelector(KeyframeSelectionConfig(max_keyframes=1000, max_clusters=1000))
    for chunk in np.array_split(rng.permutation(noms), 7):
        sel.nominate(chunk.tolist())
    ref = reference_clusters(noms, 5)
    assert [list(c.nominations) for c in sel.clusters()] == ref
    assert sel.keyframes() == [sorted(c)[(len(c) - 1) // 2] for c in ref]
    for a, b in zip(sel.clusters(), sel.clusters()[1:], strict=False):
        assert b.start - a.end > 5  # disjoint, farther apart than d


def test_at_most_8_kept_recent_by_default():
    sel = KeyframeSelector()
    sel.nominate(range(0, 200, 10))  # 20 separate clusters
    assert len(sel) == 20
    assert sel.keyframes() == list(range(120, 200, 10))  # the most recent 8, in frame order


def test_most_nominated_policy():
    sel = KeyframeSelector(KeyframeSelectionConfig(max_keyframes=2, keep="most_nominated"))
    sel.nominate([0, 0, 0, 100, 200, 200, 300])
    assert sel.keyframes() == [0, 200]
    sel.nominate([300, 300])  # now 300 has 3 too, as has 0; 200 drops out
    assert sel.keyframes() == [0, 300]
    one = KeyframeSelector(KeyframeSelectionConfig(max_keyframes=1, keep="most_nominated"))
    one.nominate([0, 0, 50, 50])
    assert one.keyframes() == [50]  # ties go to the more recent


def test_bad_nominations_leave_state_unchanged_and_old_clusters_are_forgotten():
    sel = KeyframeSelector(KeyframeSelectionConfig(max_keyframes=2, max_clusters=3))
    sel.nominate([1])
    for bad in ([2, -1], [3, 1.5], [True]):
        with pytest.raises(InvalidInputError):
            sel.nominate(bad)
    assert [c.nominations for c in sel.clusters()] == [(1,)]
    sel.nominate([100, 200, 300, 400])
    assert [c.start for c in sel.clusters()] == [200, 300, 400]


def _scene(seed: int, h: int = 60, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((h // 6, w // 8, 1), np.uint8))


def _noisy(img: np.ndarray, seed: int) -> np.ndarray:
    n = np.random.default_rng(seed).integers(-6, 7, size=img.shape)
    return np.clip(img.astype(int) + n, 0, 255).astype(np.uint8)


def test_novelty_nominator_nominates_new_views_once():
    nom = NoveltyNominator()
    a, b = _scene(1), _scene(2)
    picks = [nom.observe(i, _noisy(a, i)) for i in range(5)]
    assert picks == [True, False, False, False, False]
    assert nom.observe(5, b) is True
    assert nom.observe(6, _noisy(b, 6)) is False
    # back to scene a: known while frame 0 is a keyframe, new once it is not
    assert nom.observe(7, _noisy(a, 7), keyframe_ids=[0, 5]) is False
    assert nom.observe(8, _noisy(a, 8), keyframe_ids=[5]) is True
    assert nom.observe(9, np.zeros((60, 80), np.uint8)) is True  # grayscale accepted
    with pytest.raises(InvalidInputError):
        nom.observe(10, np.zeros((60, 80, 3), np.float32))


def test_nominator_and_selector_together_keep_at_most_8():
    nom, sel = NoveltyNominator(), KeyframeSelector()
    for fid in range(200):
        scene = _scene(fid // 10)  # a new view every 10 frames
        if nom.observe(fid, _noisy(scene, fid), keyframe_ids=sel.keyframes()):
            sel.nominate([fid])
    kfs = sel.keyframes()
    assert 1 <= len(kfs) <= 8 and kfs == sorted(kfs)
    assert kfs[-1] >= 190  # the latest view is remembered


def test_configs_from_ros_style_parameters():
    cfg = from_dict(
        ContextConfig,
        {
            "map.size_px": 384,
            "history_capacity": 256,
            "selection": {"max_keyframes": 4, "keep": "most_nominated"},
        },
    )
    assert cfg.map.size_px == 384 and cfg.history_capacity == 256 and cfg.selection.max_keyframes == 4
    flat = flatten(ContextConfig())
    assert flat["map.size_px"] == 512 and flat["selection.merge_distance_frames"] == 5
    assert flat["map.background_rgb"] == [255, 255, 255]
    assert all(isinstance(v, (bool, int, float, str, list)) for v in flat.values())
    assert from_dict(ContextConfig, flat) == ContextConfig()  # round trip
    for bad in ({"map.size_px": 64}, {"selection.keep": "oldest"}, {"map.outlier_sigma": -1.0}, {"nope": 1}):
        with pytest.raises(ConfigError):
            from_dict(ContextConfig, bad)
    with pytest.raises(ConfigError):
        MapConfig(watermark_corner="middle")
    with pytest.raises(ConfigError):
        KeyframeSelectionConfig(max_keyframes=0)

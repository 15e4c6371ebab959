"""MemER's keyframe contract: positions in the recent window, votes clustered by the one filter, "not shown
twice"; checked against a direct batch transcription of the rules on random vote streams."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spatial_memory.context.keyframes import KeyframeSelector
from spatial_memory.errors import InvalidInputError
from spatial_memory.policy.memer import MemERKeyframes, positions_to_frame_ids, subsample


def memer_reference(votes: list[int], gap: int = 5, keep: int = 8) -> list[int]:
    """The rules as stated: sort the votes, a new cluster where the gap exceeds `gap`, the lower median of
    each cluster represents it, the last `keep` representatives are the keyframes."""
    if not votes:
        return []
    s = sorted(votes)
    clusters = [[s[0]]]
    for a, b in zip(s, s[1:], strict=False):
        if b - a > gap:
            clusters.append([])
        clusters[-1].append(b)
    return [statistics.median_low(c) for c in clusters][-keep:]


def test_positions_are_one_indexed_into_the_recent_window():
    assert positions_to_frame_ids([1, 3, 3], [40, 41, 42]) == [40, 42, 42]


@pytest.mark.parametrize("bad", [0, 4, -1, True, 1.0, "2", None])
def test_a_bad_position_is_refused_and_no_vote_is_counted(bad):
    kf = MemERKeyframes()
    with pytest.raises(InvalidInputError):
        kf.vote([1, bad], [40, 41, 42])
    assert kf.keyframes() == []  # the good vote of the same tick was not added either


def test_the_filter_is_the_spatial_context_selector():
    assert isinstance(MemERKeyframes().selector, KeyframeSelector)


def test_lower_median_gap_and_last_eight():
    kf = MemERKeyframes()
    kf.vote([1, 2, 3, 4], [10, 12, 13, 30])  # cluster {10, 12, 13}: median_low 12; 30 alone (gap 17 > 5)
    assert kf.keyframes() == [12, 30]
    kf.vote([1], [35])  # gap 5 to 30: joins it -> {30, 35}: median_low 30
    assert kf.keyframes() == [12, 30]
    for i in range(10):
        kf.vote([1], [100 + 10 * i])  # ten far-apart clusters: only the last eight stay
    assert kf.keyframes() == [100 + 10 * i for i in range(2, 10)]


def test_keyframes_inside_the_recent_window_are_not_shown_twice():
    kf = MemERKeyframes()
    kf.vote([1, 2], [10, 30])
    assert kf.keyframes() == [10, 30]
    assert kf.shown(recent_ids=[28, 29, 30, 31]) == [10]
    assert kf.shown(recent_ids=[50, 51]) == [10, 30]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 300), st.lists(st.integers(1, 8), max_size=4)),  # (window start, positions)
        max_size=30,
    )
)
def test_votes_over_ticks_give_the_reference_keyframes(ticks):
    kf = MemERKeyframes()
    all_votes: list[int] = []
    for start, positions in ticks:
        window = list(range(start, start + 8))
        all_votes += kf.vote(positions, window)
    assert kf.keyframes() == memer_reference(all_votes)


def test_subsample_spreads_and_keeps_the_newest():
    assert subsample(list(range(5)), 8) == [0, 1, 2, 3, 4]
    out = subsample(list(range(30)), 8)
    assert len(out) == 8 and out[-1] == 29 and out[0] == 0 and out == sorted(out)
    assert subsample([7, 8, 9], 1) == [9]
    with pytest.raises(InvalidInputError):
        subsample([1], 0)

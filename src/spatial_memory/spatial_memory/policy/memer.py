"""MemER's keyframe contract on the policy's side: positions in the recent window in, keyframes out.

MemER's high-level policy sees the recent frames (a window of N, subsampled from the camera at the policy's
rate), the keyframes selected so far and the task, and names candidate keyframes as 1-indexed positions in
the recent window. Candidates are votes: each tick's votes go into one 1-D single-linkage clustering over
frame ids (a new cluster starts where the gap between sorted votes exceeds 5), each cluster is represented
by the lower median of its votes, and the last 8 representatives are the keyframes. A keyframe still inside
the recent window is not shown to the policy a second time.

The clustering is `context.keyframes.KeyframeSelector`, the same object the spatial context's selection
uses (one implementation); `MemERKeyframes` adds the positions-to-ids step and the "not shown twice" rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from spatial_memory.context.config import KeyframeSelectionConfig
from spatial_memory.context.keyframes import KeyframeSelector
from spatial_memory.errors import InvalidInputError


def positions_to_frame_ids(positions: Iterable[object], recent_ids: Sequence[int]) -> list[int]:
    """Frame ids of 1-indexed `positions` in the recent window `recent_ids` (oldest first).

    Every position is checked before any is converted: an integer (not a bool) in 1..len(recent_ids),
    else one InvalidInputError naming it. Repeats are kept (a repeated vote counts twice).
    """
    n = len(recent_ids)
    out: list[int] = []
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, int):
            raise InvalidInputError(f"keyframe positions must be integers, got {p!r}")
        if not 1 <= p <= n:
            raise InvalidInputError(f"keyframe position {p} is outside the recent window 1..{n}")
        out.append(int(recent_ids[p - 1]))
    return out


class MemERKeyframes:
    """Votes in (positions in the recent window), keyframes out, with MemER's rules (module docstring)."""

    def __init__(self, config: KeyframeSelectionConfig | None = None) -> None:
        self.config = config or KeyframeSelectionConfig()
        self.selector = KeyframeSelector(self.config)

    def reset(self) -> None:
        self.selector.reset()

    def vote(self, positions: Iterable[object], recent_ids: Sequence[int]) -> list[int]:
        """Add one tick's votes; returns the voted frame ids (all-or-nothing: a bad position adds none)."""
        ids = positions_to_frame_ids(positions, recent_ids)
        self.selector.nominate(ids)
        return ids

    def keyframes(self) -> list[int]:
        """The kept representatives (at most `max_keyframes`), oldest first."""
        return self.selector.keyframes()

    def shown(self, recent_ids: Iterable[int]) -> list[int]:
        """The keyframes to show next to the recent window: those not inside it (not shown twice)."""
        window = {int(i) for i in recent_ids}
        return [k for k in self.keyframes() if k not in window]


def subsample(ids: Sequence[int], n: int) -> list[int]:
    """At most `n` of `ids`, evenly spread and always including the newest (MemER's recent window)."""
    if n < 1:
        raise InvalidInputError(f"a recent window holds at least 1 frame, got {n}")
    if len(ids) <= n:
        return list(ids)
    last = len(ids) - 1
    picks = sorted({last - round(i * last / (n - 1)) for i in range(n)}) if n > 1 else [last]
    return [ids[i] for i in picks]

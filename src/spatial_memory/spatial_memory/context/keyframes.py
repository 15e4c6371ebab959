"""MemER keyframe selection: nominated frames, 1-D single-linkage clusters, one representative each.

MemER's high-level policy nominates candidate keyframes at every step; "all candidate keyframes are
aggregated across time with 1D single-linkage using a merge distance of d=5 frames, yielding disjoint
clusters", and one representative per cluster becomes a keyframe (at most 8 in practice).

Here:

* Nominations are frame ids (the ids `SpatialContext.add_frame` returns), so the merge distance is in
  units of those ids: if the context gets a frame per policy step, d = 5 means 5 policy steps. Two
  nominations at most d apart (inclusive: 10 and 15 merge, 10 and 16 do not) are linked; clusters are
  the connected runs, so a cluster can be longer than d (single linkage chains).
* Representative: the median of the cluster's nominations, counted with multiplicity (a frame nominated
  at several steps weighs more); for an even count the lower median, so it is always a nominated frame.
  MemER's exact rule is not in the public text; the median is robust to a stray nomination at either end.
* At most `max_keyframes` are kept. `keep="recent"` keeps the clusters with the latest representatives
  (the memory follows the task); `keep="most_nominated"` keeps those with the most nominations (ties go
  to the more recent). `keyframes()` lists the kept representatives in increasing frame order.

`NoveltyNominator` stands in for the policy's nominations: it nominates a frame when its image differs
enough from the current keyframes' images and from the last nominated one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from spatial_memory.context.config import KeyframeSelectionConfig
from spatial_memory.errors import InvalidInputError


@dataclass(frozen=True)
class Cluster:
    """A run of nominations: first and last frame, the nominations (sorted, with repeats), its keyframe."""

    start: int
    end: int
    nominations: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.nominations)

    @property
    def representative(self) -> int:
        """Lower median of the nominations."""
        return self.nominations[(len(self.nominations) - 1) // 2]


def _frame_id(x: object) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or int(x) < 0:
        raise InvalidInputError(f"nominated frame ids must be integers >= 0, got {x!r}")
    return int(x)


class KeyframeSelector:
    """Incremental 1-D single-linkage clustering of nominated frame ids (pure: no images, no poses)."""

    def __init__(self, config: KeyframeSelectionConfig | None = None) -> None:
        self.config = config or KeyframeSelectionConfig()
        self._starts: list[int] = []  # cluster starts, sorted; clusters are disjoint and > d apart
        self._clusters: list[Cluster] = []

    def __len__(self) -> int:
        """Number of clusters remembered."""
        return len(self._clusters)

    def reset(self) -> None:
        self._starts.clear()
        self._clusters.clear()

    def nominate(self, frame_ids: Iterable[int]) -> None:
        """Add nominations (any order; repeats count). All ids are checked before any is added."""
        ids = [_frame_id(x) for x in frame_ids]
        for fid in ids:
            self._add(fid)
        excess = len(self._clusters) - self.config.max_clusters
        if excess > 0:  # forget the oldest clusters
            del self._clusters[:excess]
            del self._starts[:excess]

    def _add(self, fid: int) -> None:
        d = self.config.merge_distance_frames
        # clusters that fid links to: those with start - d <= fid <= end + d (at most two neighbours)
        i = bisect.bisect_right(self._starts, fid + d)  # clusters [0, i) start at or before fid + d
        lo = i
        while lo > 0 and self._clusters[lo - 1].end >= fid - d:
            lo -= 1
        merged = [fid]
        for c in self._clusters[lo:i]:
            merged.extend(c.nominations)
        merged.sort()
        new = Cluster(start=merged[0], end=merged[-1], nominations=tuple(merged))
        self._clusters[lo:i] = [new]
        self._starts[lo:i] = [new.start]

    def clusters(self) -> tuple[Cluster, ...]:
        """All remembered clusters, oldest first."""
        return tuple(self._clusters)

    def keyframes(self) -> list[int]:
        """Representatives of the kept clusters (at most `max_keyframes`), in increasing frame order."""
        cs = self._clusters
        m = self.config.max_keyframes
        if len(cs) > m:
            if self.config.keep == "recent":
                cs = cs[-m:]
            else:  # most_nominated; ties go to the more recent cluster
                cs = sorted(cs, key=lambda c: (c.count, c.start), reverse=True)[:m]
        return sorted(c.representative for c in cs)


class NoveltyNominator:
    """Nominates frames whose image looks new compared with the current keyframes' images.

    Descriptor: a hue-saturation histogram (HSV, `novelty_hue_bins` x `novelty_sat_bins`, compared with
    the Bhattacharyya distance) and a small blurred grayscale thumbnail (`novelty_thumbnail_px` wide,
    compared as (1 - normalised cross-correlation) / 2). The distance is their weighted mean, in [0, 1].
    A frame is nominated when its distance to every reference exceeds `novelty_threshold`; references
    are the descriptors of the current keyframes (those it has seen nominated) and of the last
    nomination, so a steady novel view is nominated once rather than every frame.
    """

    def __init__(self, config: KeyframeSelectionConfig | None = None) -> None:
        self.config = config or KeyframeSelectionConfig()
        self._desc: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._last: int | None = None
        self.last_distance: float = float("nan")

    def descriptor(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(histogram, thumbnail) of an RGB or grayscale uint8 image."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InvalidInputError("novelty images must be uint8 HxW or HxWx3 (RGB) arrays")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim == 3 and image.shape[2] != 3:
            raise InvalidInputError(f"novelty images must have 1 or 3 channels, got shape {image.shape}")
        if min(image.shape[:2]) < 4:
            raise InvalidInputError(f"novelty image too small: {image.shape}")
        cfg = self.config
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else np.ascontiguousarray(image)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist(
            [hsv], [0, 1], None, [cfg.novelty_hue_bins, cfg.novelty_sat_bins], [0, 180, 0, 256]
        )
        hist = (hist / max(float(hist.sum()), 1.0)).astype(np.float32)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        w = cfg.novelty_thumbnail_px
        h = max(4, round(w * gray.shape[0] / gray.shape[1]))
        thumb = cv2.resize(
            cv2.GaussianBlur(gray, (0, 0), max(gray.shape) / (4.0 * w)), (w, h), interpolation=cv2.INTER_AREA
        )
        t = thumb.astype(np.float32).ravel()
        t -= t.mean()
        norm = float(np.linalg.norm(t))
        t = t / norm if norm > 1e-6 else np.zeros_like(t)
        return hist, t

    def distance(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
        """Descriptor distance in [0, 1]."""
        hist_d = float(cv2.compareHist(a[0], b[0], cv2.HISTCMP_BHATTACHARYYA))
        ncc = float(a[1] @ b[1]) if np.any(a[1]) and np.any(b[1]) else float(np.array_equal(a[1], b[1]))
        thumb_d = (1.0 - ncc) / 2.0
        w = self.config.novelty_hist_weight
        return float(np.clip(w * hist_d + (1.0 - w) * thumb_d, 0.0, 1.0))

    def observe(self, frame_id: int, image: np.ndarray, keyframe_ids: Iterable[int] | None = None) -> bool:
        """True if frame `frame_id` is nominated. `keyframe_ids`: the current keyframes (None: compare with
        every frame this nominator has nominated and still remembers)."""
        fid = _frame_id(frame_id)
        desc = self.descriptor(image)
        if keyframe_ids is None:
            refs = list(self._desc)
        else:
            keep = {int(k) for k in keyframe_ids}
            refs = [k for k in self._desc if k in keep or k == self._last]
        self.last_distance = min((self.distance(desc, self._desc[k]) for k in refs), default=1.0)
        if self.last_distance <= self.config.novelty_threshold:
            return False
        if keyframe_ids is not None:  # forget descriptors of frames that are neither keyframes nor last
            self._desc = {k: v for k, v in self._desc.items() if k in keep}
        self._desc[fid] = desc
        self._last = fid
        excess = len(self._desc) - self.config.max_clusters
        for k in list(self._desc)[: max(0, excess)]:
            del self._desc[k]
        return True

"""Configs of the spatial-context component: the map's look, the pose history, keyframe selection.

Frozen dataclasses validated in `__post_init__` (raising `ConfigError`), with ROS-parameter friendly field
types only (bool, int, float, str and tuples of those, never None), so `spatial_memory.config.flatten` turns
them into ROS parameter names (`map.size_px`, `selection.max_keyframes`) and `from_dict` builds them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spatial_memory.errors import ConfigError

_CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
_KEEP_POLICIES = ("recent", "most_nominated")


def _check_rgb(name: str, value: tuple[int, ...]) -> None:
    if len(value) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in value):
        raise ConfigError(f"{name} must be three integers in 0..255, got {value!r}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class MapConfig:
    """How the egocentric bird's-eye-view map is drawn (sizes in pixels, distances in metres).

    The map is a square `size_px` image. Keyframes are drawn inside a disc (the "map edge" ring) whose
    radius leaves `edge_margin_px` free for the off-map chevrons; the farthest inlier keyframe sits at
    `1 / (1 + scale_margin)` of the ring radius, and the ring never stands for less than `min_extent_m`
    metres, so a single close keyframe does not get blown up to the edge.
    """

    size_px: int = 512
    # colours are tuple[int, ...] (length checked below): spatial_memory.config.from_dict mishandles
    # fixed-length tuple annotations such as tuple[int, int, int]
    background_rgb: tuple[int, ...] = (255, 255, 255)  # RGB
    off_map_rgb: tuple[int, ...] = (236, 238, 242)  # RGB, the band outside the edge ring
    edge_margin_px: int = 40  # from the canvas border to the edge ring (room for chevrons + labels)
    marker_radius_px: int = 15  # keyframe marker radius at few keyframes
    min_marker_radius_px: int = 8  # markers shrink towards this when many keyframes crowd the disc
    marker_fill_ratio: float = 0.3  # max fraction of the disc area that markers may cover before shrinking
    marker_gap_px: int = 2  # minimum free space between two markers
    robot_size_px: int = 16  # half-height of the robot triangle at the centre
    scale_margin: float = 0.12  # farthest inlier at 1/(1+margin) of the edge radius
    min_extent_m: float = 0.5  # the edge ring stands for at least this many metres
    outlier_sigma: float = 2.0  # keyframes farther than mean + sigma * std of the distances are off-map
    outlier_min_keyframes: int = 4  # fewer keyframes than this: no outlier test (std is meaningless)
    show_arrows: bool = True  # each keyframe's viewing direction
    arrow_length_px: int = 16
    show_range_rings: bool = True
    show_scale_bar: bool = True
    show_legend: bool = True  # small "up = robot forward" caption in a corner
    leader_min_px: float = 4.0  # draw a leader line when a marker was moved farther than this
    font_scale: float = 0.55  # marker numbers at the full marker radius (scaled with the radius)
    nadir_threshold_deg: float = 10.0  # within this of straight down, heading uses the image-up direction
    watermark_size_frac: float = 0.16  # watermark square side as a fraction of min(image H, W)
    watermark_min_px: int = 14
    watermark_corner: str = "top_left"

    def __post_init__(self) -> None:
        if not isinstance(self.size_px, int) or not 128 <= self.size_px <= 4096:
            raise ConfigError(f"map.size_px must be an integer in 128..4096, got {self.size_px!r}")
        _check_rgb("map.background_rgb", self.background_rgb)
        _check_rgb("map.off_map_rgb", self.off_map_rgb)
        for name in ("marker_radius_px", "min_marker_radius_px", "robot_size_px", "arrow_length_px"):
            _positive(f"map.{name}", getattr(self, name))
        if self.min_marker_radius_px > self.marker_radius_px:
            raise ConfigError("map.min_marker_radius_px must be <= map.marker_radius_px")
        if self.marker_gap_px < 0 or self.edge_margin_px < 0 or self.leader_min_px < 0:
            raise ConfigError("map.marker_gap_px, map.edge_margin_px and map.leader_min_px must be >= 0")
        edge_radius = self.size_px / 2 - self.edge_margin_px - self.marker_radius_px
        if edge_radius < 4 * self.marker_radius_px:
            raise ConfigError(
                f"map.size_px={self.size_px} leaves an edge ring of {edge_radius:.0f} px; make the "
                "map larger or the margin/markers smaller"
            )
        if not 0.0 < self.marker_fill_ratio <= 0.6:
            raise ConfigError(f"map.marker_fill_ratio must be in (0, 0.6], got {self.marker_fill_ratio}")
        if self.scale_margin < 0:
            raise ConfigError(f"map.scale_margin must be >= 0, got {self.scale_margin}")
        _positive("map.min_extent_m", self.min_extent_m)
        _positive("map.outlier_sigma", self.outlier_sigma)
        if self.outlier_min_keyframes < 2:
            raise ConfigError(f"map.outlier_min_keyframes must be >= 2, got {self.outlier_min_keyframes}")
        _positive("map.font_scale", self.font_scale)
        if not 0.0 < self.nadir_threshold_deg < 90.0:
            raise ConfigError(f"map.nadir_threshold_deg must be in (0, 90), got {self.nadir_threshold_deg}")
        if not 0.02 <= self.watermark_size_frac <= 0.5:
            raise ConfigError(
                f"map.watermark_size_frac must be in [0.02, 0.5], got {self.watermark_size_frac}"
            )
        _positive("map.watermark_min_px", self.watermark_min_px)
        if self.watermark_corner not in _CORNERS:
            raise ConfigError(
                f"map.watermark_corner must be one of {_CORNERS}, got {self.watermark_corner!r}"
            )


@dataclass(frozen=True)
class KeyframeSelectionConfig:
    """MemER keyframe filter: 1-D single-linkage clustering of nominated frame indices.

    `merge_distance_frames` is in frame-index units of the frames being nominated (the ids handed to
    `KeyframeSelector.nominate`): two nominations at most that many frames apart fall in one cluster.
    `keep` decides which clusters survive when there are more than `max_keyframes`: "recent" keeps the
    latest ones, "most_nominated" the ones with the most nominations (ties go to the more recent).
    The `novelty_*` fields configure the simple visual-novelty nominator that stands in for the policy.
    """

    merge_distance_frames: int = 5
    max_keyframes: int = 8
    keep: str = "recent"
    max_clusters: int = 1024  # clusters remembered; the oldest are forgotten beyond this
    novelty_threshold: float = 0.22  # nominate above this distance to every reference (kitchen tour: new
    # views 0.15-0.43 from each other, a revisited view 0.09)
    novelty_thumbnail_px: int = 16  # width of the grayscale thumbnail (height keeps the aspect, >= 4)
    novelty_hue_bins: int = 16
    novelty_sat_bins: int = 4
    novelty_hist_weight: float = 0.5  # distance = w * histogram + (1 - w) * thumbnail

    def __post_init__(self) -> None:
        if self.merge_distance_frames < 0:
            raise ConfigError(
                f"selection.merge_distance_frames must be >= 0, got {self.merge_distance_frames}"
            )
        if self.max_keyframes < 1:
            raise ConfigError(f"selection.max_keyframes must be >= 1, got {self.max_keyframes}")
        if self.keep not in _KEEP_POLICIES:
            raise ConfigError(f"selection.keep must be one of {_KEEP_POLICIES}, got {self.keep!r}")
        if self.max_clusters < self.max_keyframes:
            raise ConfigError("selection.max_clusters must be >= selection.max_keyframes")
        if not 0.0 < self.novelty_threshold < 1.0:
            raise ConfigError(f"selection.novelty_threshold must be in (0, 1), got {self.novelty_threshold}")
        if not 4 <= self.novelty_thumbnail_px <= 128:
            raise ConfigError(
                f"selection.novelty_thumbnail_px must be in 4..128, got {self.novelty_thumbnail_px}"
            )
        if self.novelty_hue_bins < 2 or self.novelty_sat_bins < 1:
            raise ConfigError("selection.novelty_hue_bins must be >= 2 and novelty_sat_bins >= 1")
        if not 0.0 <= self.novelty_hist_weight <= 1.0:
            raise ConfigError(
                f"selection.novelty_hist_weight must be in [0, 1], got {self.novelty_hist_weight}"
            )


# The pose history allocates its ring of `history_capacity` slots up front (8 bytes each, plus about 1 kB
# per record once filled): a million frames is 15 h at 15 Hz and about 1 GB, and anything beyond it is a
# typo that would otherwise die later with a bare MemoryError. Images are kept by reference, 0.9 MB each
# at 640x480: 4096 of them is about 3.8 GB.
MAX_HISTORY_CAPACITY = 1_000_000
MAX_IMAGES = 4096


@dataclass(frozen=True)
class ContextConfig:
    """The spatial context: pose history, image retention, the camera frame FK is asked for, the map.

    Images passed to `add_frame` are kept by reference for the newest `max_images` frames only (a
    640x480 RGB frame is 0.9 MB, so the default 64 holds about 59 MB); older frames keep their pose
    but drop the image. `selection` is not used by `SpatialContext` itself; it configures the keyframe
    selector the node or pipeline wires next to it, so one parameter block covers the component.
    """

    camera_frame: str = "wrist_camera_optical_frame"
    history_capacity: int = 1024
    max_images: int = 64
    # camera and base poses farther than this from the world origin are physically absurd (a corrupt pose
    # or unit mix-up): add_frame refuses them rather than let one frame wreck the map's scale
    max_pose_distance_m: float = 1000.0
    map: MapConfig = field(default_factory=MapConfig)
    selection: KeyframeSelectionConfig = field(default_factory=KeyframeSelectionConfig)

    def __post_init__(self) -> None:
        if not self.camera_frame:
            raise ConfigError("camera_frame must be a non-empty frame name")
        if not 1 <= self.history_capacity <= MAX_HISTORY_CAPACITY:
            raise ConfigError(
                f"history_capacity must be within 1..{MAX_HISTORY_CAPACITY} frames, "
                f"got {self.history_capacity}"
            )
        if not 0 <= self.max_images <= MAX_IMAGES:
            raise ConfigError(
                f"max_images must be within 0..{MAX_IMAGES} (at most history_capacity are kept), "
                f"got {self.max_images}"
            )
        limit = self.max_pose_distance_m
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0.0 < limit < float("inf"):
            raise ConfigError(f"max_pose_distance_m must be a finite number > 0, got {limit!r}")
        if not isinstance(self.map, MapConfig):
            raise ConfigError(f"map must be a MapConfig, got {type(self.map).__name__}")
        if not isinstance(self.selection, KeyframeSelectionConfig):
            raise ConfigError(
                f"selection must be a KeyframeSelectionConfig, got {type(self.selection).__name__}"
            )

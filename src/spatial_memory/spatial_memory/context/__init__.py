"""Spatial context: pose history, keyframes, egocentric BEV keyframe map, watermarks, keyframe selection."""

from spatial_memory.context.bev import MapLayout, layout, render
from spatial_memory.context.config import ContextConfig, KeyframeSelectionConfig, MapConfig
from spatial_memory.context.history import FrameRecord, PoseHistory
from spatial_memory.context.keyframes import Cluster, KeyframeSelector, NoveltyNominator
from spatial_memory.context.palette import (
    KeyframeStyle,
    PaletteEntry,
    contrast_ratio,
    keyframe_color,
    palette,
)
from spatial_memory.context.spatial_context import Keyframe, PoseModel, SpatialContext
from spatial_memory.context.watermark import watermark_image, watermark_images

__all__ = [
    "Cluster",
    "ContextConfig",
    "FrameRecord",
    "Keyframe",
    "KeyframeSelectionConfig",
    "KeyframeSelector",
    "KeyframeStyle",
    "MapConfig",
    "MapLayout",
    "NoveltyNominator",
    "PaletteEntry",
    "PoseHistory",
    "PoseModel",
    "SpatialContext",
    "contrast_ratio",
    "keyframe_color",
    "layout",
    "palette",
    "render",
    "watermark_image",
    "watermark_images",
]

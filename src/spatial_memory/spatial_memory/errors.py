"""The one exception family of the project.

Library code raises these; only the CLI (and the ROS shells, which turn them into service responses or
log lines) catches them. Input errors also subclass `ValueError`, so callers that expect the standard
exception for a bad argument get it.
"""


class SpatialMemoryError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(SpatialMemoryError, ValueError):
    """An argument is malformed: wrong shape, NaN, out of limits, not a rigid transform, bad encoding."""


class UnknownFrameError(SpatialMemoryError, KeyError):
    """A frame or keyframe id that the pose history does not hold (never added, removed, or aged out)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ConfigError(SpatialMemoryError, ValueError):
    """A configuration value or file is invalid (unknown key, wrong type, value out of range)."""


class ResourceNotFoundError(SpatialMemoryError, FileNotFoundError):
    """A packaged resource (URDF, config, model) could not be located."""

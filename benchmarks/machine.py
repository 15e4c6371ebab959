"""Benchmarks import `machine` from here (they run as scripts from this folder); it lives in the package."""

from spatial_memory.provenance import machine

__all__ = ["machine"]

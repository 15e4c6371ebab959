"""spatial_memory: a spatial memory for robots.

The core (everything outside `spatial_memory.ros`) imports no ROS: it runs in a plain Python process
(`spatial-memory demo`) and is wrapped by thin rclpy nodes in `spatial_memory.ros`.
"""

import logging

from spatial_memory.errors import SpatialMemoryError

__all__ = ["SpatialMemoryError", "__version__"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

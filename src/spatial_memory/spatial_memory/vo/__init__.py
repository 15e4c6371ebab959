"""Visual odometry: TUM RGB-D data, evo-based evaluation and frame-to-frame OpenCV baselines."""

"""go_to_picture: send a picture file as a GoToPicture goal to policy_node and report until it ends.

    ros2 run spatial_memory go_to_picture kitchen.png
    ros2 run spatial_memory go_to_picture kitchen.png --backend refined --budget 120

Prints the feedback once a second (the memory's answer, its confidence, the distance, what the policy does)
and the result; Ctrl-C cancels the goal (the robot stops). Exit status 0 when the robot arrived or the memory
said "not seen", 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import rclpy
from rclpy.action import ActionClient
from rclpy.node import Node

from spatial_memory.msgs import conversions as conv
from spatial_memory.msgs import topics
from spatial_memory_interfaces.action import GoToPicture

RESULTS = {1: "arrived", 2: "not seen", 3: "gave up", 4: "cancelled"}


def read_picture(path: Path) -> Any:
    """An RGB array from an image file, or SystemExit with one clear line."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"go_to_picture: cannot read an image from {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="go_to_picture", description=__doc__.split("\n\n")[0])
    p.add_argument("picture", type=Path, help="image file (PNG, JPEG) of the place to go to")
    p.add_argument("--backend", default="", help="memory backend: '' (default), kinaema, keyframes, refined")
    p.add_argument("--budget", type=float, default=0.0, help="seconds for the task (0: policy_node's)")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for policy_node's action")
    return p


def main(argv: list[str] | None = None) -> int:
    args, ros_args = _parser().parse_known_args(argv)
    picture = read_picture(args.picture)
    rclpy.init(args=ros_args)
    node = Node("go_to_picture")
    try:
        return _run(node, picture, args)
    except KeyboardInterrupt:
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _run(node: Node, picture: Any, args: argparse.Namespace) -> int:
    client = ActionClient(node, GoToPicture, topics.GO_TO_PICTURE)
    if not client.wait_for_server(timeout_sec=args.wait):
        print(f"go_to_picture: no '{topics.GO_TO_PICTURE}' action server (is policy_node running?)")
        return 1
    goal = GoToPicture.Goal(backend=args.backend, budget_s=float(args.budget))
    goal.picture = conv.numpy_to_image(picture, "rgb8", factory=conv.RclpyFactory(), stamp_ns=0)
    last_print = [0.0]

    def on_feedback(msg: Any) -> None:
        fb = msg.feedback
        if time.monotonic() - last_print[0] < 1.0:
            return
        last_print[0] = time.monotonic()
        where = (
            "no answer yet"
            if fb.confidence == 0 and fb.distance_m == 0
            else (
                f"{fb.distance_m:.2f} m away, confidence {fb.confidence:.2f}, seen {fb.seen_probability:.2f}"
            )
        )
        print(f"{fb.subtask}: {where}", flush=True)

    sent = client.send_goal_async(goal, feedback_callback=on_feedback)
    rclpy.spin_until_future_complete(node, sent)
    handle = sent.result()
    if handle is None or not handle.accepted:
        print("go_to_picture: the goal was rejected (see policy_node's log)")
        return 1
    print(f"goal accepted: {args.picture}")
    result_future = handle.get_result_async()
    try:
        rclpy.spin_until_future_complete(node, result_future)
    except KeyboardInterrupt:
        cancel = handle.cancel_goal_async()
        rclpy.spin_until_future_complete(node, cancel, timeout_sec=5.0)
        rclpy.spin_until_future_complete(node, result_future, timeout_sec=5.0)
    result = result_future.result()
    if result is None:
        print("go_to_picture: no result")
        return 1
    r = result.result
    elapsed = f"{r.elapsed_s:.1f} s" if math.isfinite(r.elapsed_s) else "?"
    print(f"result: {RESULTS.get(r.status, r.status)} after {elapsed}: {r.reason}")
    return 0 if r.status in (1, 2) else 1


if __name__ == "__main__":
    sys.exit(main())

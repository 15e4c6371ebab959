"""A high-level policy that asks a vision-language model, on MemER's contract, without ever blocking the loop.

`VLMPolicy` talks to any OpenAI-compatible chat-completions endpoint through the `openai` package (vLLM,
llama.cpp's server, Ollama and hosted APIs all speak it). Each request carries the task (text and/or goal
picture), the bird's-eye map with its numbered legend, the watermarked keyframes (numbered as on the map)
and the recent frames (numbered 1..N, oldest first), all as JPEG data URLs, and asks for one JSON object:

    {"current_subtask": str, "keyframe_positions": [int, ...], "goal_keyframe": int | null,
     "status": "running" | "arrived" | "not_seen" | "gave_up"}

`keyframe_positions` are MemER's votes (1-indexed positions in the recent window that was sent);
`goal_keyframe` is the map number of a keyframe to drive to.

Why a background thread: a VLM rarely answers within the loop's 1 s tick. `decide` starts a request beside
the loop (one in flight at a time, with the newest observation) and returns at once with the newest answer
it has, marked `stale` when it was made for an earlier tick. Until the first answer, after a failed
request (timeout, HTTP error, malformed or out-of-range JSON after the bounded retries) and when the last
answer is older than `max_decision_age_s`, the fallback policy (the scripted one) decides instead. Every
outcome is counted (`stats()`).

A stale answer is re-issued against the observation at hand: its nominations are frame ids (converted once,
against the recent window the VLM saw) and go out once, with the answer's first decision; its goal is the
goal keyframe's position in the *current* observation (found by frame id), so the goal stays on the place
while the robot moves and disappears when that keyframe does.
"""

from __future__ import annotations

import base64
import colorsys
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.policy.interface import (
    GOAL_PICTURE,
    Decision,
    Frame,
    Goal,
    HighLevelPolicy,
    KeyframeView,
    Observation,
    Pose2D,
    Status,
)
from spatial_memory.policy.memer import positions_to_frame_ids, subsample

log = logging.getLogger(__name__)

PLACEHOLDER_API_KEY = "not-needed"  # local servers ignore the key, but the client insists on one
REPLY_KEYS = ("current_subtask", "keyframe_positions", "goal_keyframe", "status")
MAX_REPLY_CHARS = 100_000  # a reply longer than this is not searched for JSON (bounded work per reply)


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class VLMConfig:
    """Where the VLM is and how to talk to it (ROS-parameter friendly: no None fields).

    `api_key_env` names the environment variable that holds the key; when it is empty or unset a
    placeholder key is sent (local servers need none). `image_px` is the longest side of every image
    sent (map, keyframes, recent frames, goal picture). `max_retries` more attempts follow a failed one,
    `retry_backoff_s` apart. An answer whose observation is more than `max_decision_age_s` older than the
    current one is no longer re-issued: the fallback decides.
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 20.0
    max_retries: int = 1
    retry_backoff_s: float = 0.5
    image_px: int = 384
    jpeg_quality: int = 80
    recent_frames: int = 8
    json_response_format: bool = True
    temperature: float = 0.0
    max_tokens: int = 300
    max_decision_age_s: float = 15.0

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"vlm.base_url must be an http:// or https:// URL, got {self.base_url!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("vlm.model must be a non-empty string")
        if not isinstance(self.api_key_env, str):
            raise ConfigError(f"vlm.api_key_env must be a string, got {self.api_key_env!r}")
        _check_number("vlm.timeout_s", self.timeout_s, 0.0, 600.0, low_open=True)
        _check_int("vlm.max_retries", self.max_retries, 0, 10)
        _check_number("vlm.retry_backoff_s", self.retry_backoff_s, 0.0, 60.0)
        _check_int("vlm.image_px", self.image_px, 32, 4096)
        _check_int("vlm.jpeg_quality", self.jpeg_quality, 1, 100)
        _check_int("vlm.recent_frames", self.recent_frames, 1, 64)
        if not isinstance(self.json_response_format, bool):
            raise ConfigError(f"vlm.json_response_format must be a bool, got {self.json_response_format!r}")
        _check_number("vlm.temperature", self.temperature, 0.0, 2.0)
        _check_int("vlm.max_tokens", self.max_tokens, 16, 32768)
        _check_number("vlm.max_decision_age_s", self.max_decision_age_s, 0.0, 3600.0, low_open=True)

    def api_key(self) -> str:
        """The key from the environment, or a placeholder when there is none (local servers)."""
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return key or PLACEHOLDER_API_KEY


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}")


def _check_number(name: str, value: object, low: float, high: float, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be a number in {bracket}{low}, {high}], got {value!r}")


# ---------------------------------------------------------------------------------------------- prompt
SYSTEM_PROMPT = """\
You are the high-level policy of a mobile robot with a spatial memory. Once a second you see the task, a \
bird's-eye map of the keyframes the robot remembers, the keyframe images (each stamped with its map \
number) and the robot's recent camera frames (numbered 1..N, oldest first; frame N is the current view).

Answer with one JSON object and nothing else:
{"current_subtask": "<what to do now, a few words>", "keyframe_positions": [<recent frame numbers>], \
"goal_keyframe": <map number of a keyframe, or null>, \
"status": "running" | "arrived" | "not_seen" | "gave_up"}

- keyframe_positions: numbers (1..N) of recent frames worth remembering for the rest of the task (a \
landmark, the goal's surroundings, a place to come back to); [] if none.
- goal_keyframe: the keyframe nearest to where the robot should drive next; null to look around or stay.
- status: "arrived" when the current view shows the goal place; "not_seen" when nothing the robot has \
seen matches the goal; "gave_up" when the task cannot be done; otherwise "running"."""

_HUE_NAMES = (
    "red",
    "orange",
    "yellow",
    "lime",
    "green",
    "teal",
    "cyan",
    "azure",
    "blue",
    "violet",
    "magenta",
    "pink",
)


def colour_name(rgb: Sequence[int]) -> str:
    """A coarse English name for an RGB colour (helps a VLM match a legend line to a marker)."""
    r, g, b = (max(0, min(255, int(c))) / 255.0 for c in rgb)
    h, light, s = colorsys.rgb_to_hls(r, g, b)
    if s < 0.2 or light < 0.12 or light > 0.92:
        return "black" if light < 0.25 else "white" if light > 0.8 else "grey"
    name = _HUE_NAMES[int(round(h * 12)) % 12]
    return f"dark {name}" if light < 0.35 else f"light {name}" if light > 0.75 else name


def relative_words(forward: float, left: float) -> str:
    """'2.3 m ahead, 1.1 m left' for a (forward, left) offset in metres."""
    ahead = f"{abs(forward):.1f} m {'ahead' if forward >= 0 else 'behind'}"
    side = f"{abs(left):.1f} m {'left' if left >= 0 else 'right'}"
    return f"{ahead}, {side}"


def encode_image(image: np.ndarray, longest_px: int, quality: int) -> str:
    """An RGB uint8 image as a JPEG base64 data URL, resized so its longest side is `longest_px`."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InvalidInputError(f"images sent to the VLM must be RGB uint8 (H, W, 3), got {shape} {dtype}")
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise InvalidInputError(f"cannot send an empty image ({h}x{w}) to the VLM")
    scale = longest_px / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InvalidInputError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _image(image: np.ndarray, config: VLMConfig) -> dict:
    url = encode_image(image, config.image_px, config.jpeg_quality)
    return {"type": "image_url", "image_url": {"url": url}}


def recent_window(observation: Observation, config: VLMConfig) -> tuple[Frame, ...]:
    """The recent frames the VLM sees: at most `config.recent_frames`, evenly spread, newest included."""
    picks = subsample(list(range(len(observation.recent))), config.recent_frames)
    return tuple(observation.recent[i] for i in picks)


def _legend_line(kf: KeyframeView, in_window: dict[int, int]) -> str:
    where = relative_words(*kf.position) if kf.position is not None else "position unknown"
    line = f"- #{kf.number}: {colour_name(kf.color)} marker, {where}"
    if kf.frame_id in in_window:
        line += f" (this is recent frame {in_window[kf.frame_id]})"
    return line


def _memory_lines(observation: Observation) -> list[str]:
    """The memory's latest estimate of the goal picture's place, moved to the robot's base now."""
    reading = observation.answers.get(GOAL_PICTURE)
    if reading is None:
        return []
    pose = reading.relative_to(observation.odom_base)
    sigma = "unknown" if not math.isfinite(reading.sigma_m) else f"{reading.sigma_m:.1f} m"
    return [
        f"The spatial memory estimates the goal picture was taken {relative_words(pose.x, pose.y)} "
        f"(uncertainty {sigma}, probability that the robot has seen it {reading.seen_probability:.2f})."
    ]


def build_messages(observation: Observation, config: VLMConfig) -> list[dict]:
    """OpenAI chat-completions messages for one observation (see the module docstring for the contract).

    Images, in order: the goal picture (if any), the map (if any), the keyframes with an image that are not
    inside the recent window (MemER: not shown twice; the legend says which recent frame they are), and the
    recent window (`recent_window`), each resized to `config.image_px` on its longest side.
    """
    window = recent_window(observation, config)
    in_window = {f.frame_id: i for i, f in enumerate(window, start=1)}
    task = observation.task
    parts: list[dict] = [_text(f"Task: {task.text.strip() or 'go to where the goal picture was taken'}")]
    if task.goal_image is not None:
        parts += [_text("Goal picture (drive to where it was taken):"), _image(task.goal_image, config)]
    if observation.map_image is not None:
        parts += [
            _text(
                "Map: bird's-eye view, the robot at the centre facing up, its left on the left; each "
                "numbered marker is a keyframe, its arrow the keyframe camera's viewing direction."
            ),
            _image(observation.map_image, config),
        ]
    else:
        parts.append(_text("No map yet."))
    if observation.keyframes:
        legend = [_legend_line(kf, in_window) for kf in observation.keyframes]
        head = "Keyframes (map number, marker colour, where from the robot now):"
        parts.append(_text("\n".join([head, *legend])))
        for kf in observation.keyframes:
            if kf.image is not None and kf.frame_id not in in_window:
                parts += [_text(f"Keyframe #{kf.number}:"), _image(kf.image, config)]
    else:
        parts.append(_text("No keyframes yet."))
    if window:
        n = len(window)
        parts.append(_text(f"Recent frames, oldest first (1..{n}; {n} is the current view):"))
        for i, frame in enumerate(window, start=1):
            parts += [_text(f"Frame {i}:"), _image(frame.image, config)]
    else:
        parts.append(_text("No recent frames yet."))
    parts += [_text(line) for line in _memory_lines(observation)]
    numbers = ", ".join(str(kf.number) for kf in observation.keyframes) or "none"
    parts.append(
        _text(
            f"keyframe_positions may use 1..{len(window)}; goal_keyframe one of: {numbers} (or "
            "null). Reply with the JSON object only."
        )
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": parts}]


# ---------------------------------------------------------------------------------------------- reply
class MalformedReplyError(InvalidInputError):
    """The reply holds no JSON object, or the object has missing keys or wrong types."""


class OutOfRangeReplyError(InvalidInputError):
    """The reply is well formed but names a recent frame or keyframe that does not exist."""


@dataclass(frozen=True)
class VLMReply:
    """A validated answer: MemER's subtask and votes, an optional goal keyframe number, the status."""

    current_subtask: str
    keyframe_positions: tuple[int, ...]
    goal_keyframe: int | None
    status: Status


def _balanced_end(text: str, start: int) -> int:
    """Index just past the object opening at `start` (braces inside JSON strings do not count), or -1 if
    it never closes."""
    depth = 0
    in_string = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def first_json_object(text: str) -> dict:
    """The first balanced `{...}` in `text` that parses as a JSON object (prose and code fences around it
    are skipped; a brace-delimited bit of prose that is not JSON is passed over), else MalformedReplyError."""
    if not isinstance(text, str):
        raise MalformedReplyError(f"the reply must be text, got {type(text).__name__}")
    text = text[:MAX_REPLY_CHARS]
    start = text.find("{")
    unclosed = False
    while start != -1:
        end = _balanced_end(text, start)
        if end == -1:
            unclosed = True
        else:
            try:
                value = json.loads(text[start:end], parse_constant=_reject_constant)
            except ValueError:
                value = None
            if isinstance(value, dict):
                return value
        start = text.find("{", start + 1)
    what = "an unbalanced JSON object (no closing brace)" if unclosed else "no JSON object"
    raise MalformedReplyError(f"the VLM reply holds {what}: {_excerpt(text)}")


def _excerpt(text: str, n: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= n else flat[: n - 3] + "...")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_reply(text: str, n_recent: int, n_keyframes: int) -> VLMReply:
    """Strictly parse a VLM reply: the first balanced JSON object in `text`, validated.

    `current_subtask` a string; `keyframe_positions` a list of integers (not bools) in 1..n_recent (repeats
    are votes and kept); `goal_keyframe` absent, null or an integer in 1..n_keyframes; `status` one of
    running, arrived, not_seen, gave_up. Other keys are ignored. Raises MalformedReplyError (no object,
    missing keys, wrong types) or OutOfRangeReplyError (a number outside its range), both InvalidInputError.
    """
    obj = first_json_object(text)
    missing = [k for k in ("current_subtask", "keyframe_positions", "status") if k not in obj]
    if missing:
        raise MalformedReplyError(f"the VLM reply lacks {', '.join(missing)}: {_excerpt(json.dumps(obj))}")
    subtask = obj["current_subtask"]
    if not isinstance(subtask, str):
        raise MalformedReplyError(f"current_subtask must be a string, got {subtask!r}")
    positions = obj["keyframe_positions"]
    if not isinstance(positions, list) or not all(_is_int(p) for p in positions):
        raise MalformedReplyError(f"keyframe_positions must be a list of integers, got {positions!r}")
    bad = [p for p in positions if not 1 <= p <= n_recent]
    if bad:
        raise OutOfRangeReplyError(
            f"keyframe_positions {bad} are outside the recent window 1..{n_recent}"
            if n_recent > 0
            else f"keyframe_positions {bad} given but no recent frames were sent"
        )
    goal = obj.get("goal_keyframe")
    if goal is not None:
        if not _is_int(goal):
            raise MalformedReplyError(f"goal_keyframe must be an integer or null, got {goal!r}")
        if not 1 <= goal <= n_keyframes:
            raise OutOfRangeReplyError(
                f"goal_keyframe {goal} is not a keyframe on the map (1..{n_keyframes})"
                if n_keyframes > 0
                else f"goal_keyframe {goal} given but the map has no keyframes"
            )
    status = obj["status"]
    allowed = [s.value for s in Status]
    if not isinstance(status, str) or status not in allowed:
        raise MalformedReplyError(f"status must be one of {allowed}, got {status!r}")
    return VLMReply(subtask, tuple(positions), goal, Status(status))


# ---------------------------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class _Answer:
    """A validated VLM answer with what it refers to (the observation it was made for)."""

    reply: VLMReply
    stamp_ns: int  # the observation's stamp
    nominated_ids: tuple[int, ...]  # keyframe_positions as frame ids of the window that was sent
    goal_frame_id: int | None  # the goal keyframe's frame id (numbers may change; ids do not)
    latency_s: float  # job start (observation handed over) to validated answer
    generation: int


class _AttemptError(Exception):
    """One attempt failed; `kind` is the counter it goes to."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


_COUNTERS = (
    "jobs",
    "requests",
    "answers",
    "timeouts",
    "http_errors",
    "connection_errors",
    "malformed",
    "out_of_range",
    "retries",
    "format_rejections",
    "bad_observations",
    "failures",
    "discarded",
    "vlm_decisions",
    "stale_decisions",
    "fallbacks",
)


class VLMPolicy:
    """A `HighLevelPolicy` backed by an OpenAI-compatible VLM, never blocking `decide` (module docstring).

    `fallback` decides whenever there is no usable VLM answer (its decisions come out with
    `source="fallback:<fallback.name>"`). Call `close()` when done: it stops the background request.
    """

    def __init__(self, config: VLMConfig, fallback: HighLevelPolicy, *, name: str = "vlm") -> None:
        import openai  # here, so that importing the policy package never needs the client library

        self.config = config
        self.fallback = fallback
        self.name = name
        self._openai = openai
        api_key = config.api_key()
        if api_key == PLACEHOLDER_API_KEY:
            log.info("no API key in $%s: sending a placeholder (fine for local servers)", config.api_key_env)
        self._client = openai.OpenAI(
            base_url=config.base_url, api_key=api_key, timeout=config.timeout_s, max_retries=0
        )
        self._lock = threading.Lock()  # guards the state below; held only briefly
        self._decide_lock = threading.Lock()  # one decide at a time (the fallback need not be thread-safe)
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._json_format = config.json_response_format
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._answer: _Answer | None = None
        self._answer_issued = False
        self._failure = ""  # why the last job failed ("" after a success)
        self._last_latency_s = math.nan
        self._closed = False

    # -- public ------------------------------------------------------------------------------------------
    def decide(self, observation: Observation) -> Decision:
        """The newest VLM decision (or the fallback's), after starting a request if none is in flight."""
        with self._decide_lock:
            with self._lock:
                self._maybe_start(observation)
                answer, issued, failure = self._answer, self._answer_issued, self._failure
                usable, why = self._usable(answer, failure, observation)
                if usable:
                    self._answer_issued = True
            if usable:
                return self._from_answer(answer, not issued, observation)
            return self._fallback(observation, why)

    def reset(self) -> None:
        """Forget the task: drop the current answer; an answer still in flight is discarded when it lands."""
        with self._lock:
            self._generation += 1
            self._answer = None
            self._answer_issued = False
            self._failure = ""
        self.fallback.reset()

    def close(self, timeout_s: float = 1.0) -> bool:
        """Stop: no new requests or retries, `decide` falls back from now on. Waits up to `timeout_s` for
        the request thread; True if it ended. The client library cannot interrupt a request in flight: its
        (daemon) thread ends by itself within `config.timeout_s` and its outcome is discarded."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout_s)
        ended = thread is None or not thread.is_alive()
        if ended:
            self._client.close()
        else:
            log.info("VLM request still in flight at close(); it ends within %g s", self.config.timeout_s)
        return ended

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no request is in flight (for harnesses and tests that must not race the VLM);
        True if idle within `timeout_s`."""
        with self._idle:
            return self._idle.wait_for(lambda: self._thread is None, timeout_s)

    def busy(self) -> bool:
        """True while a request is in flight."""
        with self._lock:
            return self._thread is not None

    def stats(self) -> dict[str, float | int | bool | str]:
        """Counters (see `_COUNTERS`), the last answer's latency (s, NaN before any), whether the JSON
        response format is still asked for, and why the last request failed ('' if it did not)."""
        with self._lock:
            out: dict[str, float | int | bool | str] = dict(self._counts)
            out["last_latency_s"] = self._last_latency_s
            out["json_response_format"] = self._json_format
            out["last_failure"] = self._failure
            out["in_flight"] = self._thread is not None
        return out

    # -- decisions ---------------------------------------------------------------------------------------
    def _usable(self, answer: _Answer | None, failure: str, obs: Observation) -> tuple[bool, str]:
        if self._closed:
            return False, "vlm closed"
        if failure:
            return False, f"vlm failed: {failure}"
        if answer is None:
            return False, "no vlm answer yet"
        age_s = (obs.stamp_ns - answer.stamp_ns) / 1e9
        if age_s > self.config.max_decision_age_s:
            return False, f"vlm answer {age_s:.1f} s old (> {self.config.max_decision_age_s:g} s)"
        return True, ""

    def _fallback(self, obs: Observation, why: str) -> Decision:
        decision = self.fallback.decide(obs)
        with self._lock:
            self._counts["fallbacks"] += 1
        reason = f"{decision.reason}; {why}" if decision.reason else why
        return replace(decision, source=f"fallback:{self.fallback.name}", reason=reason)

    def _from_answer(self, answer: _Answer, first: bool, obs: Observation) -> Decision:
        """`answer` as a decision for `obs`: nominations only the first time, the goal where its keyframe
        is now."""
        stale = answer.stamp_ns != obs.stamp_ns
        reply = answer.reply
        nominated = answer.nominated_ids if first else ()
        if not stale:
            positions = reply.keyframe_positions if first else ()
        else:  # positions into this observation's window, for the nominated frames still inside it
            now = {f.frame_id: i for i, f in enumerate(obs.recent, start=1)}
            positions = tuple(now[fid] for fid in nominated if fid in now)
        goal, goal_number, goal_note = _goal_from_keyframe(answer.goal_frame_id, obs)
        age_s = (obs.stamp_ns - answer.stamp_ns) / 1e9
        reason = (
            f"vlm answer for the observation at {answer.stamp_ns} ns, {age_s:.1f} s old, "
            f"latency {answer.latency_s:.2f} s" + (f"; {goal_note}" if goal_note else "")
        )
        with self._lock:
            self._counts["vlm_decisions"] += 1
            self._counts["stale_decisions"] += int(stale)
        return Decision(
            stamp_ns=obs.stamp_ns,
            subtask=reply.current_subtask,
            keyframe_positions=positions,
            nominated_frame_ids=nominated,
            goal=goal,
            explore=goal is None and reply.status is Status.RUNNING,
            ask=(GOAL_PICTURE,) if obs.task.is_go_to_picture else (),
            status=reply.status,
            reason=reason,
            source="vlm",
            stale=stale,
            goal_keyframe=goal_number,
        )

    # -- the request beside the loop ---------------------------------------------------------------------
    def _maybe_start(self, obs: Observation) -> None:
        """Start a request with `obs` unless one is in flight (caller holds the lock)."""
        if self._thread is not None or self._closed:
            return
        self._counts["jobs"] += 1
        self._thread = threading.Thread(
            target=self._job, args=(obs, self._generation), name="vlm-request", daemon=True
        )
        self._thread.start()

    def _job(self, obs: Observation, generation: int) -> None:
        t0 = time.monotonic()
        answer: _Answer | None = None
        failure = ""
        try:
            answer = self._ask(obs, generation, t0)
        except _AttemptError as exc:
            failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any bug or surprise in a request
            log.exception("VLM request failed unexpectedly")
            failure = f"unexpected {type(exc).__name__}: {exc}"
        with self._lock:
            self._thread = None
            current = generation == self._generation and not self._closed
            if answer is not None and current:
                self._answer, self._answer_issued, self._failure = answer, False, ""
                self._last_latency_s = answer.latency_s
            elif answer is not None:
                self._counts["discarded"] += 1
            elif failure:
                self._counts["failures"] += 1
                if current:
                    self._answer, self._failure = None, failure
            self._idle.notify_all()
            closed = self._closed
        if closed:  # close() did not wait for this request; release the connection pool now
            self._client.close()

    def _ask(self, obs: Observation, generation: int, t0: float) -> _Answer:
        """One job: build the request, send it with bounded retries, validate the reply."""
        window = recent_window(obs, self.config)
        try:
            messages = build_messages(obs, self.config)
        except InvalidInputError as exc:
            self._count("bad_observations")
            raise _AttemptError("bad_observations", f"cannot build the request: {exc}") from exc
        last: _AttemptError | None = None
        for attempt in range(self.config.max_retries + 1):
            if self._stop.is_set():
                raise _AttemptError("stopped", "vlm closed")
            if attempt > 0:
                self._count("retries")
                if self._stop.wait(self.config.retry_backoff_s * attempt):
                    raise _AttemptError("stopped", "vlm closed")
            try:
                text = self._send(messages)
                reply = parse_reply(text, len(window), len(obs.keyframes))
                return self._answer_from(reply, obs, window, generation, t0)
            except _AttemptError as exc:
                last = exc
            except OutOfRangeReplyError as exc:
                last = _AttemptError("out_of_range", f"out-of-range reply: {exc}")
            except InvalidInputError as exc:
                last = _AttemptError("malformed", f"malformed reply: {exc}")
            if last.kind != "stopped":
                self._count(last.kind)
            log.warning("VLM attempt %d/%d failed: %s", attempt + 1, self.config.max_retries + 1, last)
        assert last is not None
        raise _AttemptError(last.kind, f"{last} (after {self.config.max_retries + 1} attempts)")

    def _answer_from(
        self, reply: VLMReply, obs: Observation, window: Sequence[Frame], generation: int, t0: float
    ) -> _Answer:
        ids = positions_to_frame_ids(reply.keyframe_positions, [f.frame_id for f in window])
        goal_id = None
        if reply.goal_keyframe is not None:
            by_number = {kf.number: kf.frame_id for kf in obs.keyframes}
            if reply.goal_keyframe not in by_number:  # numbering with gaps: in 1..K but not on the map
                raise OutOfRangeReplyError(f"goal_keyframe {reply.goal_keyframe} is not on the map")
            goal_id = by_number[reply.goal_keyframe]
        latency = time.monotonic() - t0
        self._count("answers")
        log.debug("VLM answered in %.2f s: %s", latency, reply)
        return _Answer(reply, obs.stamp_ns, tuple(ids), goal_id, latency, generation)

    def _send(self, messages: list[dict]) -> str:
        """One chat-completions call; the reply's text, or _AttemptError with the counter it belongs to.

        A 400 while the JSON response format is asked for is taken as "this server does not support it":
        it is sent again at once without it (not a retry), and never asked for again.
        """
        openai = self._openai
        while True:
            use_format = self._json_format
            kwargs: dict = {
                "model": self.config.model,
                "messages": messages,
                "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens,
            }
            if use_format:
                kwargs["response_format"] = {"type": "json_object"}
            self._count("requests")
            try:
                response = self._client.chat.completions.create(**kwargs)
            except openai.BadRequestError as exc:
                if not use_format:
                    raise _AttemptError("http_errors", f"HTTP 400: {exc.message}") from exc
                log.info("server rejected response_format json_object (HTTP 400); asking without it")
                with self._lock:
                    self._json_format = False
                    self._counts["format_rejections"] += 1
                continue
            except openai.APITimeoutError as exc:
                raise _AttemptError("timeouts", f"timeout after {self.config.timeout_s:g} s") from exc
            except openai.APIStatusError as exc:
                raise _AttemptError("http_errors", f"HTTP {exc.status_code}: {exc.message}") from exc
            except openai.APIConnectionError as exc:
                if self._stop.is_set():
                    raise _AttemptError("stopped", "vlm closed") from exc
                raise _AttemptError("connection_errors", f"connection error: {exc}") from exc
            except openai.OpenAIError as exc:  # e.g. a response body that is not a chat completion
                raise _AttemptError("http_errors", f"bad response: {exc}") from exc
            return _reply_text(response)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1


def _reply_text(response: object) -> str:
    """The first choice's message text; MalformedReplyError when the response has none."""
    choices = getattr(response, "choices", None) or []
    content = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
    if not isinstance(content, str):
        raise MalformedReplyError("the VLM response has no message text")
    return content


def _goal_from_keyframe(frame_id: int | None, obs: Observation) -> tuple[Goal | None, int | None, str]:
    """The goal at the keyframe with `frame_id` as it is in `obs` (position now, yaw facing it), its
    current number, and a note when the keyframe cannot be used."""
    if frame_id is None:
        return None, None, ""
    kf = next((k for k in obs.keyframes if k.frame_id == frame_id), None)
    if kf is None:
        return None, None, f"goal keyframe (frame {frame_id}) is no longer on the map"
    if kf.position is None:
        return None, kf.number, f"goal keyframe #{kf.number} has no position"
    fwd, left = kf.position
    pose = Pose2D(float(fwd), float(left), math.atan2(left, fwd) if (fwd or left) else 0.0)
    return Goal(pose=pose, source=f"keyframe {kf.number}"), kf.number, ""

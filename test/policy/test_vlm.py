"""VLMPolicy: config, request building, strict reply parsing, and the policy against a stub OpenAI server.

The policy tests use the real `openai` client against `stub_openai_server.StubOpenAIServer` on 127.0.0.1,
which checks every request (path, model, images, schema) and answers as each test scripts it. They wait on
events (`VLMPolicy.wait_idle`, the stub's request semaphore), never on sleeps; a slow answer is held back
by the stub until the test releases it, so no test waits out a timeout longer than it sets.
"""

from __future__ import annotations

import base64
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stub_openai_server import Reply, StubOpenAIServer

from spatial_memory.errors import ConfigError, InvalidInputError
from spatial_memory.policy.interface import (
    GOAL_PICTURE,
    Decision,
    Frame,
    HighLevelPolicy,
    KeyframeView,
    MemoryReading,
    Observation,
    Pose2D,
    Status,
    Task,
)
from spatial_memory.policy.vlm import (
    PLACEHOLDER_API_KEY,
    MalformedReplyError,
    OutOfRangeReplyError,
    VLMConfig,
    VLMPolicy,
    VLMReply,
    build_messages,
    encode_image,
    parse_reply,
)

WAIT_S = 60.0  # generous: the machine is shared; a passing run never waits this long
MODEL = "stub-vlm"
IMAGE_PX = 64


# ---------------------------------------------------------------------------------------------- helpers
class FakePolicy:
    """The fallback: a fixed decision, counting its calls."""

    name = "fake"

    def __init__(self) -> None:
        self.calls = 0
        self.resets = 0

    def decide(self, observation: Observation) -> Decision:
        self.calls += 1
        return Decision(
            stamp_ns=observation.stamp_ns, subtask="fallback", reason="fake reason", source="fake"
        )

    def reset(self) -> None:
        self.resets += 1


def solid(value: int, h: int = 24, w: int = 32) -> np.ndarray:
    """An RGB image of one grey level (so a decoded JPEG tells which frame it was)."""
    return np.full((h, w, 3), value, np.uint8)


def make_obs(
    t_s: float,
    first_id: int = 100,
    n_recent: int = 8,
    n_keyframes: int = 3,
    task: Task | None = None,
    positions: dict[int, tuple[float, float]] | None = None,
    keyframe_ids: dict[int, int] | None = None,
    with_map: bool = True,
) -> Observation:
    """Recent frames `first_id..first_id+n_recent-1` (oldest first); keyframes 1..K with frame ids 1000+k
    (or `keyframe_ids`), at (k, -k) m (or `positions`)."""
    positions = positions or {}
    keyframe_ids = keyframe_ids or {}
    recent = tuple(Frame(first_id + i, int(t_s * 1e9), solid(10 + 20 * i)) for i in range(n_recent))
    keyframes = tuple(
        KeyframeView(
            number=k,
            frame_id=keyframe_ids.get(k, 1000 + k),
            image=solid(200, 48, 64),
            position=positions.get(k, (float(k), -float(k))),
            color=(230, 25, 75),
        )
        for k in range(1, n_keyframes + 1)
    )
    return Observation(
        stamp_ns=int(t_s * 1e9),
        task=task or Task(text="go to the kitchen"),
        recent=recent,
        keyframes=keyframes,
        map_image=np.full((512, 512, 3), 255, np.uint8) if with_map else None,
    )


def reply(positions=(2, 5), goal=None, status="running", subtask="cross the hall") -> str:
    body = {"current_subtask": subtask, "keyframe_positions": list(positions), "goal_keyframe": goal}
    return json.dumps({**body, "status": status})


def images_in(messages: list[dict]) -> list[np.ndarray]:
    """Decoded (BGR) images of every image part, in order."""
    out = []
    for part in messages[1]["content"]:
        if part["type"] == "image_url":
            url = part["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,")
            raw = base64.b64decode(url.split(",", 1)[1], validate=True)
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None
            out.append(img)
    return out


def texts_in(messages: list[dict]) -> str:
    parts = [p["text"] for p in messages[1]["content"] if p["type"] == "text"]
    return "\n".join([messages[0]["content"], *parts])


@pytest.fixture
def stub() -> Iterator[StubOpenAIServer]:
    server = StubOpenAIServer().start()
    server.expect_model = MODEL
    server.expect_longest_px = IMAGE_PX
    server.expect_images = 1 + 3 + 8  # make_obs' default: the map, 3 keyframes, 8 recent frames
    yield server
    server.stop()
    assert server.problems == [], server.problems


@pytest.fixture
def make_policy(stub: StubOpenAIServer) -> Iterator[Callable[..., tuple[VLMPolicy, FakePolicy]]]:
    """VLMPolicy factory against the stub (fast retries, small images); closes every policy at teardown."""
    made: list[VLMPolicy] = []

    def factory(**overrides: object) -> tuple[VLMPolicy, FakePolicy]:
        kwargs = dict(
            base_url=stub.base_url,
            model=MODEL,
            timeout_s=WAIT_S,
            max_retries=1,
            retry_backoff_s=0.0,
            image_px=IMAGE_PX,
        )
        kwargs.update(overrides)
        fake = FakePolicy()
        policy = VLMPolicy(VLMConfig(**kwargs), fake)
        made.append(policy)
        return policy, fake

    yield factory
    stub.release.set()
    for policy in made:
        policy.close(timeout_s=WAIT_S)


def settle(policy: VLMPolicy) -> None:
    assert policy.wait_idle(WAIT_S), "the VLM request never ended"


# ---------------------------------------------------------------------------------------------- config
def test_default_config_is_valid_and_local() -> None:
    cfg = VLMConfig()
    assert cfg.base_url.startswith("http://127.0.0.1")
    assert cfg.recent_frames == 8
    assert cfg.json_response_format is True


@pytest.mark.parametrize(
    "field, value",
    [
        ("base_url", "localhost:8000/v1"),
        ("model", " "),
        ("api_key_env", None),
        ("timeout_s", 0.0),
        ("timeout_s", math.nan),
        ("max_retries", -1),
        ("max_retries", True),
        ("max_retries", 1.5),
        ("retry_backoff_s", -0.1),
        ("image_px", 16),
        ("jpeg_quality", 0),
        ("jpeg_quality", 101),
        ("recent_frames", 0),
        ("json_response_format", "yes"),
        ("temperature", -0.1),
        ("max_tokens", 8),
        ("max_decision_age_s", 0.0),
    ],
)
def test_config_rejects(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"vlm.{field}"):
        VLMConfig(**{field: value})


def test_api_key_from_the_environment_or_a_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_TEST_VLM_KEY", "sk-test")
    assert VLMConfig(api_key_env="SM_TEST_VLM_KEY").api_key() == "sk-test"
    monkeypatch.delenv("SM_TEST_VLM_KEY")
    assert VLMConfig(api_key_env="SM_TEST_VLM_KEY").api_key() == PLACEHOLDER_API_KEY
    assert VLMConfig(api_key_env="").api_key() == PLACEHOLDER_API_KEY


# ---------------------------------------------------------------------------------------------- messages
def test_messages_carry_every_picture_resized_and_in_order() -> None:
    goal = solid(250, 120, 90)
    obs = make_obs(1.0, task=Task(text="go where this was taken", goal_image=goal))
    messages = build_messages(obs, VLMConfig(image_px=IMAGE_PX))
    assert [m["role"] for m in messages] == ["system", "user"]
    images = images_in(messages)
    assert len(images) == 1 + 1 + 3 + 8  # goal, map, keyframes, recent frames
    assert all(max(img.shape[:2]) == IMAGE_PX for img in images)
    assert images[0].shape[:2] == (IMAGE_PX, round(90 * IMAGE_PX / 120))  # aspect kept
    grey = [int(np.median(img)) for img in images]
    assert abs(grey[0] - 250) <= 3 and abs(grey[1] - 255) <= 3  # the goal picture, then the map
    recent_grey = grey[-8:]
    assert all(abs(g - (10 + 20 * i)) <= 3 for i, g in enumerate(recent_grey))  # oldest first


def test_messages_text_has_task_legend_numbers_and_schema() -> None:
    obs = make_obs(1.0, positions={2: (3.0, 4.5)})
    text = texts_in(build_messages(obs, VLMConfig(image_px=IMAGE_PX)))
    assert "go to the kitchen" in text
    assert "#2: red marker, 3.0 m ahead, 4.5 m left" in text
    assert "#1: red marker, 1.0 m ahead, 1.0 m right" in text
    for key in ("current_subtask", "keyframe_positions", "goal_keyframe", "status", "JSON"):
        assert key in text
    assert "Frame 1:" in text and "Frame 8:" in text and "Frame 9:" not in text
    assert "Keyframe #3:" in text
    assert "1..8" in text and "one of: 1, 2, 3" in text


def test_recent_window_is_subsampled_to_config_keeping_oldest_and_newest() -> None:
    obs = make_obs(1.0, n_recent=12, n_keyframes=0)
    messages = build_messages(obs, VLMConfig(image_px=IMAGE_PX, recent_frames=8))
    images = images_in(messages)
    assert len(images) == 1 + 8
    grey = [int(np.median(img)) for img in images[1:]]
    assert abs(grey[0] - 10) <= 3 and abs(grey[-1] - (10 + 20 * 11)) <= 3
    assert grey == sorted(grey)  # still oldest first


def test_keyframe_inside_the_recent_window_is_not_shown_twice() -> None:
    obs = make_obs(1.0, keyframe_ids={2: 104})  # keyframe 2 is recent frame 5 (ids 100..107)
    messages = build_messages(obs, VLMConfig(image_px=IMAGE_PX))
    assert len(images_in(messages)) == 1 + 2 + 8
    text = texts_in(messages)
    assert "#2: red marker, 2.0 m ahead, 2.0 m right (this is recent frame 5)" in text
    assert "Keyframe #2:" not in text and "Keyframe #1:" in text


def test_empty_observation_is_text_only() -> None:
    obs = Observation(stamp_ns=0, task=Task(text="wait"))
    messages = build_messages(obs, VLMConfig(image_px=IMAGE_PX))
    assert images_in(messages) == []
    text = texts_in(messages)
    assert "No map yet." in text and "No keyframes yet." in text and "No recent frames yet." in text


def test_memory_answer_about_the_goal_is_in_the_prompt() -> None:
    reading = MemoryReading(
        picture=GOAL_PICTURE,
        stamp_ns=0,
        pose=Pose2D(2.0, -1.0, 0.0),
        sigma_m=0.4,
        seen_probability=0.9,
        confidence=0.7,
        backend="kinaema",
    )
    base = make_obs(1.0, task=Task(goal_image=solid(90)))
    obs = Observation(
        stamp_ns=base.stamp_ns, task=base.task, recent=base.recent, answers={GOAL_PICTURE: reading}
    )
    text = texts_in(build_messages(obs, VLMConfig(image_px=IMAGE_PX)))
    assert "2.0 m ahead, 1.0 m right (uncertainty 0.4 m" in text and "0.90" in text


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((24, 32, 3), np.float32),
        np.zeros((24, 32), np.uint8),
        np.zeros((24, 32, 4), np.uint8),
        np.zeros((0, 32, 3), np.uint8),
    ],
)
def test_bad_images_are_refused(image: np.ndarray) -> None:
    with pytest.raises(InvalidInputError):
        encode_image(image, IMAGE_PX, 80)


# ---------------------------------------------------------------------------------------------- parse_reply
@pytest.mark.parametrize(
    "text",
    [
        reply(),
        "```json\n" + reply() + "\n```",
        "Sure. Here is my answer: " + reply() + " Hope this helps {really}.",
        "I think {this} is prose, then: " + reply(),
        reply() + "\n" + reply(positions=(1,)),  # the first object wins
    ],
)
def test_parse_reply_finds_the_first_json_object(text: str) -> None:
    assert parse_reply(text, 8, 3) == VLMReply("cross the hall", (2, 5), None, Status.RUNNING)


def test_parse_reply_braces_and_quotes_inside_strings() -> None:
    text = (
        '{"current_subtask": "open the {box} \\"}\\" {", "keyframe_positions": [8, 8, 1], '
        '"goal_keyframe": 3, "status": "arrived", "why": {"nested": "}"}}'
    )
    assert parse_reply(text, 8, 3) == VLMReply('open the {box} "}" {', (8, 8, 1), 3, Status.ARRIVED)


def test_parse_reply_goal_keyframe_may_be_absent() -> None:
    text = '{"current_subtask": "", "keyframe_positions": [], "status": "not_seen"}'
    assert parse_reply(text, 0, 0) == VLMReply("", (), None, Status.NOT_SEEN)


def _with(**changes: object) -> str:
    body = {"current_subtask": "x", "keyframe_positions": [1], "goal_keyframe": None, "status": "running"}
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not _DROP})


_DROP = object()


@pytest.mark.parametrize(
    "text, error, fragment",
    [
        ("I cannot see anything useful.", MalformedReplyError, "no JSON object"),
        ('{"current_subtask": "x", "keyframe_positions": [1', MalformedReplyError, "unbalanced"),
        ("[1, 2, 3]", MalformedReplyError, "no JSON object"),
        (
            '{"current_subtask": "x", "keyframe_positions": [NaN], "status": "running"}',
            MalformedReplyError,
            "no JSON object",
        ),
        (_with(status=_DROP), MalformedReplyError, "lacks status"),
        ('{"answer": ' + reply() + "}", MalformedReplyError, "lacks current_subtask"),
        (_with(current_subtask=3), MalformedReplyError, "current_subtask must be a string"),
        (_with(keyframe_positions="1"), MalformedReplyError, "list of integers"),
        (_with(keyframe_positions=[True]), MalformedReplyError, "list of integers"),
        (_with(keyframe_positions=[1.0]), MalformedReplyError, "list of integers"),
        (_with(keyframe_positions=[0]), OutOfRangeReplyError, "outside the recent window 1..8"),
        (_with(keyframe_positions=[3, 9]), OutOfRangeReplyError, "[9] are outside the recent window 1..8"),
        (_with(goal_keyframe=0), OutOfRangeReplyError, "goal_keyframe 0 is not a keyframe on the map (1..3)"),
        (_with(goal_keyframe=4), OutOfRangeReplyError, "goal_keyframe 4"),
        (_with(goal_keyframe=True), MalformedReplyError, "goal_keyframe must be an integer or null"),
        (_with(goal_keyframe="2"), MalformedReplyError, "goal_keyframe must be an integer or null"),
        (_with(status="done"), MalformedReplyError, "status must be one of"),
        (_with(status=None), MalformedReplyError, "status must be one of"),
    ],
)
def test_parse_reply_rejects(text: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=None) as info:
        parse_reply(text, 8, 3)
    assert isinstance(info.value, InvalidInputError)
    assert fragment in str(info.value)


_statuses = st.sampled_from([s.value for s in Status])
_prose = st.text(alphabet=st.characters(blacklist_characters="{"), max_size=40)


@st.composite
def _replies(draw: st.DrawFn) -> tuple[dict, int, int]:
    n_recent = draw(st.integers(1, 16))
    n_keyframes = draw(st.integers(0, 12))
    body = {
        "current_subtask": draw(st.text(max_size=40)),  # any characters: braces, quotes, backslashes
        "keyframe_positions": draw(st.lists(st.integers(1, n_recent), max_size=10)),
        "goal_keyframe": draw(st.none() | st.integers(1, n_keyframes)) if n_keyframes else None,
        "status": draw(_statuses),
    }
    return body, n_recent, n_keyframes


@settings(max_examples=200, deadline=None)
@given(_replies(), _prose, st.text(max_size=40), st.booleans())
def test_property_valid_replies_round_trip_through_prose_and_fences(
    case: tuple[dict, int, int], before: str, after: str, fenced: bool
) -> None:
    body, n_recent, n_keyframes = case
    blob = json.dumps(body, ensure_ascii=False)
    text = before + ("```json\n" + blob + "\n```" if fenced else blob) + after
    parsed = parse_reply(text, n_recent, n_keyframes)
    assert parsed == VLMReply(
        body["current_subtask"],
        tuple(body["keyframe_positions"]),
        body["goal_keyframe"],
        Status(body["status"]),
    )


@settings(max_examples=200, deadline=None)
@given(_replies(), st.integers(-5, 40))
def test_property_positions_outside_the_window_are_out_of_range(
    case: tuple[dict, int, int], bad: int
) -> None:
    body, n_recent, n_keyframes = case
    body["keyframe_positions"] = [*body["keyframe_positions"], bad]
    if 1 <= bad <= n_recent:
        assert parse_reply(json.dumps(body), n_recent, n_keyframes).keyframe_positions[-1] == bad
    else:
        with pytest.raises(OutOfRangeReplyError):
            parse_reply(json.dumps(body), n_recent, n_keyframes)


_TOKENS = [
    *'{}[]":,\\ a19-',
    "null",
    "true",
    "1.5",
    '"current_subtask"',
    '"keyframe_positions"',
    '"goal_keyframe"',
    '"status"',
    '"running"',
    '"x"',
    "```",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join))
def test_property_any_text_parses_or_raises_invalid_input_only(text: str) -> None:
    try:
        out = parse_reply(text, 8, 3)
    except InvalidInputError:
        return
    assert isinstance(out, VLMReply) and all(1 <= p <= 8 for p in out.keyframe_positions)


# ---------------------------------------------------------------------------------------------- the policy
def test_vlm_policy_is_a_high_level_policy(make_policy) -> None:
    policy, _ = make_policy()
    assert isinstance(policy, HighLevelPolicy)
    assert policy.name == "vlm"
    assert math.isnan(policy.stats()["last_latency_s"])


def test_answer_is_issued_stale_with_nominations_once_and_goal_at_the_keyframe_now(stub, make_policy) -> None:
    stub.script(Reply(content=reply(positions=(2, 5, 5), goal=2)), Reply(content=reply(), block_s=WAIT_S))
    policy, fake = make_policy()
    first = policy.decide(make_obs(1.0, first_id=100))  # ids 100..107; the request starts
    assert first.source == "fallback:fake" and first.subtask == "fallback" and fake.calls == 1
    assert "no vlm answer yet" in first.reason and "fake reason" in first.reason
    settle(policy)

    obs2 = make_obs(2.0, first_id=101, positions={2: (3.0, 4.0)})  # the window moved on by one frame
    second = policy.decide(obs2)
    assert second.source == "vlm" and second.stale and second.stamp_ns == obs2.stamp_ns
    assert second.subtask == "cross the hall" and second.status is Status.RUNNING
    assert second.nominated_frame_ids == (101, 104, 104)  # positions 2, 5, 5 of the window the VLM saw
    assert second.keyframe_positions == (1, 4, 4)  # the same frames in obs2's window
    assert second.goal is not None and second.goal_keyframe == 2 and second.goal.source == "keyframe 2"
    assert second.goal.pose == pytest.approx((3.0, 4.0, math.atan2(4.0, 3.0)))
    assert not second.explore
    assert "1.0 s old" in second.reason
    assert fake.calls == 1

    assert stub.wait_requests(2, WAIT_S)  # the second request is in flight, held back by the stub
    third = policy.decide(make_obs(3.0, first_id=102, positions={2: (2.0, 0.0)}))
    assert third.source == "vlm" and third.stale
    assert third.nominated_frame_ids == () and third.keyframe_positions == ()  # nominated once only
    assert third.goal is not None and third.goal.pose == pytest.approx((2.0, 0.0, 0.0))
    stats = policy.stats()
    assert (stats["jobs"], stats["requests"], stats["answers"]) == (2, 2, 1)
    assert (stats["vlm_decisions"], stats["stale_decisions"], stats["fallbacks"]) == (2, 2, 1)
    assert stats["last_latency_s"] > 0 and stats["in_flight"] is True


def test_answer_for_the_same_observation_is_fresh(stub, make_policy) -> None:
    stub.script(
        Reply(content=reply(positions=(2, 5), status="arrived")), Reply(content=reply(), block_s=WAIT_S)
    )
    policy, _ = make_policy()
    obs = make_obs(1.0)
    assert policy.decide(obs).source == "fallback:fake"
    settle(policy)
    decision = policy.decide(obs)
    assert decision.source == "vlm" and not decision.stale
    assert decision.keyframe_positions == (2, 5) and decision.nominated_frame_ids == (101, 104)
    assert decision.status is Status.ARRIVED and decision.goal is None and not decision.explore
    assert policy.stats()["stale_decisions"] == 0


def test_no_goal_keyframe_means_explore_and_ask_about_the_goal_picture(stub, make_policy) -> None:
    stub.expect_images = 1 + 1 + 3 + 8  # the goal picture too
    stub.script(Reply(content=reply(goal=None)), Reply(content=reply(), block_s=WAIT_S))
    policy, _ = make_policy()
    task = Task(goal_image=solid(120))
    policy.decide(make_obs(1.0, task=task))
    settle(policy)
    decision = policy.decide(make_obs(2.0, task=task))
    assert decision.source == "vlm" and decision.goal is None and decision.explore
    assert decision.ask == (GOAL_PICTURE,)


def test_goal_keyframe_that_left_the_map_gives_no_goal(stub, make_policy) -> None:
    stub.script(Reply(content=reply(goal=3)), Reply(content=reply(), block_s=WAIT_S))
    policy, _ = make_policy()
    policy.decide(make_obs(1.0))
    settle(policy)
    decision = policy.decide(make_obs(2.0, keyframe_ids={3: 2000}))  # keyframe 3 is another frame now
    assert decision.source == "vlm" and decision.goal is None and decision.goal_keyframe is None
    assert "no longer on the map" in decision.reason


def test_decide_never_blocks_while_the_vlm_is_slow(stub, make_policy) -> None:
    stub.script(Reply(content=reply(), block_s=WAIT_S))
    policy, fake = make_policy()
    durations = []
    for tick in range(6):
        t0 = time.perf_counter()
        decision = policy.decide(make_obs(1.0 + tick))
        durations.append(time.perf_counter() - t0)
        assert decision.source == "fallback:fake"
        if tick == 0:
            assert stub.wait_requests(1, WAIT_S)  # the request really is in flight and held back
    assert statistics.median(durations) < 0.05, durations
    assert max(durations) < 5.0, durations  # nowhere near the stub's hold (60 s)
    stats = policy.stats()
    assert stats["jobs"] == 1 and stats["requests"] == 1 and stats["in_flight"] is True  # one at a time
    assert stats["fallbacks"] == 6 and fake.calls == 6


def test_timeouts_are_retried_a_bounded_number_of_times_then_fall_back(stub, make_policy) -> None:
    stub.script(Reply(content=reply(), block_s=WAIT_S))
    policy, fake = make_policy(timeout_s=0.3, max_retries=1)
    policy.decide(make_obs(1.0))
    settle(policy)
    stats = policy.stats()
    assert (stats["timeouts"], stats["retries"], stats["requests"], stats["failures"]) == (2, 1, 2, 1)
    assert stats["answers"] == 0 and "timeout" in stats["last_failure"]
    decision = policy.decide(make_obs(2.0))
    assert decision.source == "fallback:fake" and "vlm failed: timeout" in decision.reason
    assert policy.stats()["fallbacks"] == 2 and fake.calls == 2


def test_http_500_is_retried_max_retries_times(stub, make_policy) -> None:
    stub.script(Reply(status=500))
    policy, _ = make_policy(max_retries=2)
    policy.decide(make_obs(1.0))
    settle(policy)
    stats = policy.stats()
    assert (stats["http_errors"], stats["retries"], stats["requests"], stats["failures"]) == (3, 2, 3, 1)
    assert len(stub.seen) == 3
    decision = policy.decide(make_obs(2.0))
    assert decision.source == "fallback:fake" and "HTTP 500" in decision.reason


def test_a_retry_that_succeeds_gives_a_vlm_decision(stub, make_policy) -> None:
    stub.script(Reply(status=500), Reply(content=reply()), Reply(content=reply(), block_s=WAIT_S))
    policy, _ = make_policy(max_retries=1)
    obs = make_obs(1.0)
    policy.decide(obs)
    settle(policy)
    stats = policy.stats()
    assert (stats["http_errors"], stats["retries"], stats["answers"], stats["failures"]) == (1, 1, 1, 0)
    assert policy.decide(obs).source == "vlm"


@pytest.mark.parametrize(
    "content, counter",
    [
        ("I am not sure what to do here.", "malformed"),
        ('{"current_subtask": "x", "keyframe_positions": [1, 2', "malformed"),
        (_with(status="finished"), "malformed"),
        (_with(keyframe_positions=[9]), "out_of_range"),  # 8 recent frames were sent
        (_with(goal_keyframe=7), "out_of_range"),  # 3 keyframes on the map
    ],
)
def test_bad_replies_are_counted_retried_and_fall_back(stub, make_policy, content: str, counter: str) -> None:
    stub.script(Reply(content=content))
    policy, _ = make_policy(max_retries=1)
    policy.decide(make_obs(1.0))
    settle(policy)
    stats = policy.stats()
    assert (stats[counter], stats["retries"], stats["answers"], stats["failures"]) == (2, 1, 0, 1)
    other = "out_of_range" if counter == "malformed" else "malformed"
    assert stats[other] == 0
    decision = policy.decide(make_obs(2.0))
    assert decision.source == "fallback:fake" and counter.replace("_", "-") in decision.reason


def test_response_format_rejected_with_400_is_dropped_and_remembered(stub, make_policy) -> None:
    stub.script(Reply(content=reply(), reject_format=True))
    policy, _ = make_policy(json_response_format=True)
    policy.decide(make_obs(1.0))
    settle(policy)
    stats = policy.stats()
    assert (stats["format_rejections"], stats["answers"], stats["retries"], stats["http_errors"]) == (
        1,
        1,
        0,
        0,
    )
    assert stats["json_response_format"] is False
    assert [s.response_format for s in stub.seen] == [{"type": "json_object"}, None]
    assert policy.decide(make_obs(2.0)).source == "vlm"  # and a second request starts, without the format
    settle(policy)
    assert [s.response_format for s in stub.seen][2:] == [None]
    assert policy.stats()["format_rejections"] == 1


def test_response_format_can_be_switched_off(stub, make_policy) -> None:
    stub.script(Reply(content=reply()))
    policy, _ = make_policy(json_response_format=False)
    policy.decide(make_obs(1.0))
    settle(policy)
    assert [s.response_format for s in stub.seen] == [None]


def test_api_key_is_sent_from_the_named_environment_variable(stub, make_policy, monkeypatch) -> None:
    stub.script(Reply(content=reply()))
    monkeypatch.setenv("SM_TEST_VLM_KEY", "sk-from-env")
    policy, _ = make_policy(api_key_env="SM_TEST_VLM_KEY")
    policy.decide(make_obs(1.0))
    settle(policy)
    monkeypatch.delenv("SM_TEST_VLM_KEY")
    local, _ = make_policy(api_key_env="SM_TEST_VLM_KEY")
    local.decide(make_obs(1.0))
    settle(local)
    assert [s.authorization for s in stub.seen] == ["Bearer sk-from-env", f"Bearer {PLACEHOLDER_API_KEY}"]


def test_an_old_answer_is_not_reissued(stub, make_policy) -> None:
    stub.script(Reply(content=reply()), Reply(content=reply(), block_s=WAIT_S))
    policy, _ = make_policy(max_decision_age_s=5.0)
    policy.decide(make_obs(1.0))
    settle(policy)
    assert policy.decide(make_obs(5.0)).source == "vlm"
    late = policy.decide(make_obs(7.0))
    assert late.source == "fallback:fake" and "6.0 s old" in late.reason


def test_reset_discards_the_answer_in_flight(stub, make_policy) -> None:
    stub.script(Reply(content=reply(), block_s=WAIT_S))
    policy, fake = make_policy()
    policy.decide(make_obs(1.0))
    assert stub.wait_requests(1, WAIT_S)
    policy.reset()
    assert fake.resets == 1
    stub.release.set()
    settle(policy)
    stats = policy.stats()
    assert stats["discarded"] == 1
    decision = policy.decide(make_obs(2.0))
    assert decision.source == "fallback:fake" and "no vlm answer yet" in decision.reason


def test_bad_observation_images_fall_back_without_a_request(stub, make_policy) -> None:
    policy, _ = make_policy()
    base = make_obs(1.0)
    bad = Observation(stamp_ns=base.stamp_ns, recent=(Frame(1, 0, np.zeros((4, 4), np.float32)),))
    policy.decide(bad)
    settle(policy)
    stats = policy.stats()
    assert (stats["bad_observations"], stats["requests"], stats["failures"]) == (1, 0, 1)
    assert stub.seen == []


def test_close_stops_requests_and_decide_falls_back(stub, make_policy) -> None:
    stub.script(Reply(content=reply(), block_s=WAIT_S))
    policy, _ = make_policy()
    policy.decide(make_obs(1.0))
    assert stub.wait_requests(1, WAIT_S)
    assert policy.close(timeout_s=0.2) is False  # the request in flight cannot be interrupted ...
    stub.release.set()
    settle(policy)  # ... it ends by itself, and its answer is dropped
    assert policy.stats()["discarded"] == 1
    decision = policy.decide(make_obs(2.0))
    assert decision.source == "fallback:fake" and "vlm closed" in decision.reason
    assert len(stub.seen) == 1 and policy.stats()["jobs"] == 1  # nothing new was sent
    assert policy.close() is True


def test_close_when_idle_is_immediate(make_policy) -> None:
    policy, _ = make_policy()
    assert policy.close(timeout_s=0.0) is True
    assert not policy.busy()


def test_the_stub_refuses_a_request_it_should_refuse(stub) -> None:
    """The stub's checks can fail: a wrong model, a PNG instead of a JPEG, no schema, too few images."""
    import openai

    client = openai.OpenAI(base_url=stub.base_url, api_key="x", max_retries=0, timeout=WAIT_S)
    png = "data:image/png;base64," + base64.b64encode(cv2.imencode(".png", solid(5))[1].tobytes()).decode()
    content = [{"type": "text", "text": "JSON please"}, {"type": "image_url", "image_url": {"url": png}}]
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": content}])
    client.close()
    problems, stub.problems[:] = list(stub.problems), []  # seen here, so the fixture's check passes
    assert any("model 'other'" in p for p in problems)
    assert any("not a JPEG data URL" in p for p in problems)
    assert any("never names keyframe_positions" in p for p in problems)
    assert any("1 images, expected 12" in p for p in problems)

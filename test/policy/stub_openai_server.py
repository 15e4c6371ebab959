"""A stub OpenAI-compatible chat-completions server for the VLM policy's tests (127.0.0.1, a free port).

It checks every request the way a strict server would (POST /v1/chat/completions, the model, the messages,
every image a valid base64 JPEG data URL that OpenCV decodes at the expected size, the number of images,
the JSON response format asked for as OpenAI spells it, the reply schema named in the prompt) and records
what it saw; a request that fails a check gets HTTP 422 and its problem lands in `problems`, which the
tests' fixture asserts is empty. What it answers is scripted per test with `Reply` objects, consumed in
order (the last one repeats).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

SCHEMA_KEYS = ("current_subtask", "keyframe_positions", "goal_keyframe", "status")


@dataclass(frozen=True)
class Reply:
    """One scripted answer: `content` as the assistant's text with HTTP 200, or an error `status`.

    `block_s` > 0 holds the answer back that long (or until the server is released: tests never wait out a
    slow answer). `reject_format`: answer 400 when the request asks for a response_format, else go on.
    """

    content: str = ""
    status: int = 200
    block_s: float = 0.0
    reject_format: bool = False


@dataclass
class Seen:
    """What one request carried."""

    path: str
    model: str
    n_images: int
    image_sizes: list[tuple[int, int]]
    response_format: object
    authorization: str
    texts: list[str] = field(default_factory=list)


class StubOpenAIServer:
    """The server, run in a thread. Set `expect_model`, `expect_images` (None: any count) and
    `expect_longest_px` before the policy sends; script answers with `script(...)`."""

    def __init__(self) -> None:
        self.expect_model = "stub-vlm"
        self.expect_images: int | None = None
        self.expect_longest_px: int | None = None
        self.problems: list[str] = []
        self.seen: list[Seen] = []
        self.release = threading.Event()  # set: blocked answers go out now
        self.arrived = threading.Semaphore(0)  # released once per request received (before answering)
        self._replies: list[Reply] = [Reply(content="{}")]
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="stub-openai", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> StubOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies = list(replies)

    def wait_requests(self, n: int, timeout_s: float = 30.0) -> bool:
        """Block until `n` more requests have arrived (True) or `timeout_s` passed (False)."""
        deadline = time.monotonic() + timeout_s
        return all(self.arrived.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in range(n))

    # -- request handling ---------------------------------------------------------------------------------
    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    def _check(self, path: str, body: object) -> tuple[list[str], Seen | None]:
        """Problems with one request (empty when it is what a strict server accepts) and what it carried."""
        if path != "/v1/chat/completions":
            return [f"unexpected path {path}"], None
        if not isinstance(body, dict):
            return ["the body is not a JSON object"], None
        problems: list[str] = []
        if body.get("model") != self.expect_model:
            problems.append(f"model {body.get('model')!r} != {self.expect_model!r}")
        fmt = body.get("response_format")
        if fmt is not None and fmt != {"type": "json_object"}:
            problems.append(f"response_format {fmt!r} is not {{'type': 'json_object'}}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return [*problems, "no messages"], None
        texts, urls = _parts(messages)
        prompt = "\n".join(texts)
        problems += [f"the prompt never names {k}" for k in SCHEMA_KEYS if k not in prompt]
        if "JSON" not in prompt:
            problems.append("the prompt never asks for JSON (OpenAI's json_object mode requires it)")
        sizes = []
        for i, url in enumerate(urls):
            size, problem = _decode_jpeg_url(url)
            if problem:
                problems.append(f"image {i}: {problem}")
                continue
            sizes.append(size)
            if self.expect_longest_px is not None and max(size) != self.expect_longest_px:
                problems.append(
                    f"image {i} is {size[0]}x{size[1]}, longest side not {self.expect_longest_px}"
                )
        if self.expect_images is not None and len(urls) != self.expect_images:
            problems.append(f"{len(urls)} images, expected {self.expect_images}")
        seen = Seen(path, str(body.get("model")), len(urls), sizes, fmt, "", texts)
        return problems, seen

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output clean

            def do_GET(self) -> None:
                server.problems.append(f"GET {self.path}: the client must POST")
                self._send(405, {"error": {"message": "use POST"}})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                problems, seen = server._check(self.path, body)
                if seen is not None:
                    seen.authorization = self.headers.get("Authorization", "")
                    server.seen.append(seen)
                server.arrived.release()
                if problems:
                    server.problems.extend(problems)
                    self._send(422, {"error": {"message": "; ".join(problems), "type": "invalid_request"}})
                    return
                reply = server._next_reply()
                if reply.reject_format and isinstance(body, dict) and "response_format" in body:
                    self._send(400, {"error": {"message": "response_format is not supported", "type": "x"}})
                    return
                if reply.block_s > 0:
                    server.release.wait(reply.block_s)
                if reply.status != 200:
                    self._send(
                        reply.status, {"error": {"message": f"stub error {reply.status}", "type": "x"}}
                    )
                    return
                self._send(200, _completion(str(body.get("model")), reply.content))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timed out) before the answer: as a real server sees it

        return Handler


def _parts(messages: list) -> tuple[list[str], list[str]]:
    """All text and all image URLs in the messages (string or list-of-parts content)."""
    texts: list[str] = []
    urls: list[str] = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                texts.append(str(part.get("text")))
            elif part.get("type") == "image_url":
                urls.append(str((part.get("image_url") or {}).get("url")))
    return texts, urls


def _decode_jpeg_url(url: str) -> tuple[tuple[int, int], str]:
    """(width, height) of a JPEG data URL, and '' or what is wrong with it."""
    prefix = "data:image/jpeg;base64,"
    if not url.startswith(prefix):
        return (0, 0), f"not a JPEG data URL: {url[:40]!r}"
    try:
        raw = base64.b64decode(url[len(prefix) :], validate=True)
    except ValueError:
        return (0, 0), "invalid base64"
    if not raw.startswith(b"\xff\xd8"):
        return (0, 0), "not JPEG data"
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return (0, 0), "OpenCV cannot decode it"
    return (image.shape[1], image.shape[0]), ""


def _completion(model: str, content: str) -> dict:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }

"""A local OpenAI-compatible chat completions server, so tests drive the real ``openai`` client.

The real client and the real OpenAI instrumentation run unchanged; only the far end of the HTTP
connection is replaced, by a deterministic one on loopback. Behaviour of
``POST /v1/chat/completions``:

- the last user message contains ``FAIL``: HTTP 500 with an OpenAI-style error body;
- the request has ``tools`` and the last message is a user message containing the word
  ``order``: one call of the first tool with arguments ``{"order_id": "A-1"}``
  (finish_reason ``tool_calls``);
- the last message is a ``tool`` message: ``Your order ships tomorrow.``;
- otherwise: ``Echo: <last user content>``.

The response ``model`` is the request model plus ``-2024-08-06``, as the real API answers an
alias with a dated snapshot. ``stream: true`` is answered with a server-sent event stream
(with a final usage chunk when ``stream_options.include_usage`` is set).

``POST /v1/responses`` (the Responses API, non-streaming) answers by the same rules: its
``input`` items are read as chat messages (``function_call_output`` as a tool message), and a
tool call is a ``function_call`` output item. Any other path: 404.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, cast

LOOPBACK: Final = "127.0.0.1"
CHAT_PATH: Final = "/v1/chat/completions"
RESPONSES_PATH: Final = "/v1/responses"
MODEL_SUFFIX: Final = "-2024-08-06"
CREATED: Final = 1_722_902_400  # 2024-08-06T00:00:00Z; fixed so responses are reproducible
TOOL_ARGUMENTS: Final = {"order_id": "A-1"}
TOOL_ANSWER: Final = "Your order ships tomorrow."
FAULT_MARKER: Final = "FAIL"
POLL_INTERVAL: Final = 0.05  # seconds; bounds how long ``close`` waits for the serve loop
_ORDER_WORD: Final = re.compile(r"\border\b", re.IGNORECASE)

Json = dict[str, Any]


class OpenAIStub:
    """The server, running in a daemon thread from construction until ``close``."""

    def __init__(self) -> None:
        self._server = _Server((LOOPBACK, 0), _Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name="openai-stub",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def base_url(self) -> str:
        """What to pass as ``openai.OpenAI(base_url=...)``."""
        return f"http://{LOOPBACK}:{self._server.server_address[1]}/v1"

    @property
    def requests(self) -> list[Json]:
        """Every JSON body POSTed so far, in arrival order (the live list)."""
        return self._server.received

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIStub:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    """Holds the received bodies; handler threads are daemons so ``close`` never waits on them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.received: list[Json] = []
        self.lock = threading.Lock()

    def record(self, body: Json) -> int:
        """Store ``body``; its 1-based sequence number keeps response ids unique and stable."""
        with self.lock:
            self.received.append(body)
            return len(self.received)


class _Handler(BaseHTTPRequestHandler):
    """One request; HTTP/1.0, so each response (and each stream) ends by closing the socket."""

    server_version = "OpenAIStub/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: test output should not carry an access log."""

    def do_GET(self) -> None:
        self._not_found()

    def do_POST(self) -> None:
        body = self._read_json()
        if body is None:
            return
        sequence = cast(_Server, self.server).record(body)
        path = self.path.split("?", 1)[0]
        if path == RESPONSES_PATH:
            self._respond(body, sequence)
            return
        if path != CHAT_PATH:
            self._not_found()
            return
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list) or not messages:
            self._error(400, "invalid_request_error", "'model' and 'messages' are required.")
            return
        if FAULT_MARKER in _last_user_text(messages):
            self._error(500, "server_error", "The stub was asked to fail (FAIL in the prompt).")
            return
        message, finish_reason = _reply(body)
        usage = _usage(messages, message)
        completion_id = f"chatcmpl-stub-{sequence:04d}"
        response_model = model + MODEL_SUFFIX
        if body.get("stream") is True:
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            chunks = _chunks(message, finish_reason, usage if with_usage else None)
            self._stream(completion_id, response_model, chunks, with_usage)
            return
        self._send_json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": CREATED,
                "model": response_model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_stub",
            },
        )

    def _respond(self, body: Json, sequence: int) -> None:
        """The Responses API: the chat rules over ``input``, answered as output items."""
        model, messages = body.get("model"), _input_messages(body.get("input"))
        if not isinstance(model, str) or not messages:
            self._error(400, "invalid_request_error", "'model' and 'input' are required.")
            return
        if FAULT_MARKER in _last_user_text(messages):
            self._error(500, "server_error", "The stub was asked to fail (FAIL in the prompt).")
            return
        tools = [
            {"function": {"name": tool["name"]}}
            for tool in body.get("tools") or []
            if isinstance(tool, dict) and isinstance(tool.get("name"), str)
        ]
        message, _ = _reply({"messages": messages, "tools": tools})
        usage = _usage(messages, message)
        output: list[Json] = [
            {
                "type": "function_call",
                "id": f"fc_stub_{sequence:04d}",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
                "status": "completed",
            }
            for call in message.get("tool_calls") or []
        ]
        if not output:
            text = {"type": "output_text", "text": message["content"], "annotations": []}
            output.append(
                {
                    "type": "message",
                    "id": f"msg_stub_{sequence:04d}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [text],
                }
            )
        self._send_json(
            200,
            {
                "id": f"resp_stub_{sequence:04d}",
                "object": "response",
                "created_at": CREATED,
                "status": "completed",
                "model": model + MODEL_SUFFIX,
                "output": output,
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": body.get("tools") or [],
                "usage": {
                    "input_tokens": usage["prompt_tokens"],
                    "output_tokens": usage["completion_tokens"],
                    "total_tokens": usage["total_tokens"],
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
            },
        )

    def _read_json(self) -> Json | None:
        """The request body as a JSON object, or None after answering 400."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._error(400, "invalid_request_error", "The body must be a JSON object.")
            return None
        return body

    def _not_found(self) -> None:
        path = self.path.split("?", 1)[0]
        self._error(404, "invalid_request_error", f"Invalid URL ({self.command} {path})")

    def _error(self, status: int, kind: str, message: str) -> None:
        """The OpenAI error shape, which the client turns into an ``APIStatusError`` subclass."""
        error = {"message": message, "type": kind, "param": None, "code": None}
        self._send_json(status, {"error": error})

    def _send_json(self, status: int, payload: Json) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(
        self, completion_id: str, model: str, chunks: Iterator[Json], with_usage: bool
    ) -> None:
        """Server-sent events, ``data: [DONE]`` last, as the real endpoint streams."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for chunk in chunks:
            event = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_stub",
                **chunk,
            }
            if with_usage:
                event.setdefault("usage", None)
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def _text(message: Json) -> str:
    """A message's text, whether ``content`` is a string or a list of text parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in _TEXT_PARTS
        )
    return ""


_TEXT_PARTS: Final = frozenset({"text", "input_text", "output_text"})


def _input_messages(items: object) -> list[Json]:
    """Responses API ``input`` (a string or items) as chat messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[Json] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call_output":
            messages.append({"role": "tool", "content": str(item.get("output", ""))})
        elif kind == "function_call":
            messages.append({"role": "assistant", "content": None})
        elif isinstance(item.get("role"), str):
            messages.append({"role": item["role"], "content": item.get("content")})
    return messages


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message)
    return ""


def _reply(body: Json) -> tuple[Json, str]:
    """The assistant message and finish reason the rules in the module docstring pick."""
    messages: list[Any] = body["messages"]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    tools = body.get("tools")
    if tools and last.get("role") == "user" and _ORDER_WORD.search(_text(last)):
        call = {
            "id": "call_stub_order",
            "type": "function",
            "function": {
                "name": tools[0]["function"]["name"],
                "arguments": json.dumps(TOOL_ARGUMENTS),
            },
        }
        return _assistant(None, [call]), "tool_calls"
    if last.get("role") == "tool":
        return _assistant(TOOL_ANSWER), "stop"
    return _assistant(f"Echo: {_last_user_text(messages)}"), "stop"


def _assistant(content: str | None, tool_calls: list[Json] | None = None) -> Json:
    message: Json = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _usage(messages: list[Any], reply: Json) -> Json:
    """Whitespace-separated words stand in for tokens: deterministic, and non-zero."""
    prompt = sum(len(_text(m).split()) + 1 for m in messages if isinstance(m, dict))
    calls = reply.get("tool_calls") or []
    completion = (
        1
        + len((reply.get("content") or "").split())
        + sum(len(call["function"]["arguments"].split()) for call in calls)
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _chunks(message: Json, finish_reason: str, usage: Json | None) -> Iterator[Json]:
    """The streamed form of ``message``: role first, then content or tool call deltas."""
    yield {"choices": [_delta({"role": "assistant", "content": "", "refusal": None})]}
    content: str | None = message.get("content")
    for piece in re.findall(r"\S+\s*", content or ""):
        yield {"choices": [_delta({"content": piece})]}
    for index, call in enumerate(message.get("tool_calls") or []):
        head = {"index": index, "id": call["id"], "type": "function"}
        function = {"name": call["function"]["name"], "arguments": ""}
        yield {"choices": [_delta({"tool_calls": [{**head, "function": function}]})]}
        arguments = {"index": index, "function": {"arguments": call["function"]["arguments"]}}
        yield {"choices": [_delta({"tool_calls": [arguments]})]}
    yield {"choices": [_delta({}, finish_reason)]}
    if usage is not None:
        yield {"choices": [], "usage": usage}


def _delta(delta: Json, finish_reason: str | None = None) -> Json:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

"""The support agent as an HTTP service that learns the conversation from its front end.

The front end sends W3C ``baggage`` (and ``traceparent``) headers; the service has no
conversation-analytics code at all: the conversation instrumentation reads the id from baggage.
Web-framework instrumentations (Flask, FastAPI, ...) attach the incoming context on their own;
this standard-library server does it in one line (``propagate.extract``).

    POST /chat      {"message": "..."}  -> {"answer": "..."}
    POST /complete                       -> the conversation is resolved (one explicit call)
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
from openai_support_agent import answer

from opentelemetry import context, propagate
from opentelemetry.instrumentation.conversation import current_conversation

_histories: dict[str, list[dict[str, Any]]] = {}


class _Handler(BaseHTTPRequestHandler):
    client: openai.OpenAI

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        token = context.attach(propagate.extract(headers))
        try:
            body = json.loads(
                self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"
            )
            conv = current_conversation()
            if conv is None or conv.conversation_id is None:
                self._send(400, {"error": "no conversation in baggage"})
            elif self.path == "/chat":
                history = _histories.setdefault(conv.conversation_id, [])
                self._send(200, {"answer": answer(self.client, history, str(body["message"]))})
            elif self.path == "/complete":
                conv.complete()
                self._send(200, {})
            else:
                self._send(404, {"error": "not found"})
        finally:
            context.detach(token)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> int:
    _Handler.client = openai.OpenAI(max_retries=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0  # a normal exit: the SDK flushes its exporters at interpreter exit


if __name__ == "__main__":
    sys.exit(main())

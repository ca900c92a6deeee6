"""A small support agent on the OpenAI client, with no telemetry code of its own but one line.

It uses the official client and the GenAI utilities' tool span (what the GenAI semantic
conventions ask of an agent that runs tools); the only conversation-analytics code is the
``conversation(...)`` scope and ``complete()``. Run it under auto-instrumentation (the README's
"Zero-code" section lists the packages)::

    OTEL_TRACES_EXPORTER=conversation_analytics OTEL_METRICS_EXPORTER=none \
    OTEL_LOGS_EXPORTER=none OPENAI_BASE_URL=... OPENAI_API_KEY=... \
        opentelemetry-instrument python examples/openai_support_agent.py CONV-ID "hi" "bye"
"""

from __future__ import annotations

import json
import sys
from typing import Any

import openai
from opentelemetry.util.genai.handler import TelemetryHandler, get_telemetry_handler

from opentelemetry.instrumentation.conversation import conversation

MODEL = "gpt-4o-mini"
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order's shipping status",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


def lookup_order(order_id: str) -> str:
    """The agent's one tool."""
    return f"Order {order_id} ships tomorrow."


def answer(
    client: openai.OpenAI,
    history: list[dict[str, Any]],
    text: str,
    telemetry: TelemetryHandler | None = None,
) -> str:
    """One user turn: ask the model, run the tools it asks for, ask again until it answers."""
    telemetry = telemetry or get_telemetry_handler()
    history.append({"role": "user", "content": text})
    while True:
        reply = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS)
        message = reply.choices[0].message
        history.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return message.content or ""
        for call in message.tool_calls:
            with telemetry.tool(call.function.name, tool_call_id=call.id):
                result = lookup_order(**json.loads(call.function.arguments))
            history.append({"role": "tool", "tool_call_id": call.id, "content": result})


def main(argv: list[str]) -> int:
    conversation_id, *turns = argv
    client = openai.OpenAI(max_retries=0)
    history: list[dict[str, Any]] = []
    with conversation(conversation_id) as conv:
        for text in turns:
            print(answer(client, history, text))
        conv.complete()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

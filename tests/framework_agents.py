"""One support agent per GenAI framework and instrumentation, for the compatibility matrix.

Run as a script, one set-up per process (instrumentors patch libraries globally, and Traceloop
and the OpenAI Agents SDK keep process-wide state)::

    python tests/framework_agents.py SETUP BASE_URL OUT_DIR

Each set-up runs :data:`CONVERSATIONS` conversations of three user turns ("hi", a question that
needs the ``lookup_order`` tool, "thanks") against the OpenAI stub at ``BASE_URL``, with
``ConversationInstrumentor`` on the same SDK provider as the framework's instrumentation, and
completes all but the last. The framework sets the raw user id :func:`raw_user` its own way
wherever it has one. The process writes the finished spans as an OTLP request
(``spans.pb``, the collector's input) and the in-process exporter's rows from the same spans
(``rows.json``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Final

CONVERSATIONS: Final = 5
COMPLETED: Final = 4
TURNS: Final = ("hi", "where is my order?", "thanks")
MODEL: Final = "gpt-4o-mini"
AGENT_NAME: Final = "support-bot"
TOOL_NAME: Final = "lookup_order"
TOOL_RESULT: Final = "Order A-1 ships tomorrow."
CHAT_TOOLS: Final[list[dict[str, Any]]] = [
    {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "Look up an order's shipping status",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]
RESPONSES_TOOLS: Final = [{"type": "function", **tool["function"]} for tool in CHAT_TOOLS]


def conversation_id(setup: str, index: int) -> str:
    return f"{setup}-{index}"


def raw_user(index: int) -> str:
    """The raw user id of conversation ``index``: must never reach the store."""
    return f"user-{index}@example.com"


def lookup_order(order_id: str) -> str:
    return TOOL_RESULT


# ---- one user turn, per framework -------------------------------------------------------------

#: (base_url, provider) -> a runner: (conversation index) -> iterator over its turns.
Runner = Callable[[int], Iterator[None]]


def _openai_chat_turns(base_url: str, *, stream_plain: bool) -> Runner:
    """The bare OpenAI client's tool loop; plain turns streamed when ``stream_plain``."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)

    def run(index: int) -> Iterator[None]:
        history: list[dict[str, Any]] = []
        for text in TURNS:
            history.append({"role": "user", "content": text})
            if stream_plain and "order" not in text:
                stream = client.chat.completions.create(
                    model=MODEL,
                    messages=history,
                    stream=True,  # type: ignore[arg-type]
                )
                answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                history.append({"role": "assistant", "content": answer})
                yield
                continue
            while True:
                reply = client.chat.completions.create(
                    model=MODEL,
                    messages=history,  # type: ignore[arg-type]
                    tools=CHAT_TOOLS,  # type: ignore[arg-type]
                )
                message = reply.choices[0].message
                history.append(message.model_dump(exclude_none=True))
                if not message.tool_calls:
                    break
                for call in message.tool_calls:
                    result = lookup_order(**json.loads(call.function.arguments))  # type: ignore[union-attr]
                    history.append({"role": "tool", "tool_call_id": call.id, "content": result})
            yield

    return run


def _openai_responses_turns(base_url: str) -> Runner:
    """The Responses API's tool loop."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)

    def run(index: int) -> Iterator[None]:
        items: list[Any] = []
        for text in TURNS:
            items.append({"role": "user", "content": text})
            while True:
                response = client.responses.create(
                    model=MODEL,
                    input=items,
                    tools=RESPONSES_TOOLS,  # type: ignore[arg-type]
                )
                calls = [item for item in response.output if item.type == "function_call"]
                items.extend(item.model_dump(exclude_none=True) for item in response.output)
                if not calls:
                    break
                for call in calls:
                    result = lookup_order(**json.loads(call.arguments))  # type: ignore[union-attr]
                    items.append(
                        {"type": "function_call_output", "call_id": call.call_id, "output": result}  # type: ignore[union-attr]
                    )
            yield

    return run


def _langchain_turns(base_url: str) -> Runner:
    """LangChain: a chat model with tools bound, the app running the tool calls."""
    from langchain_core.messages import BaseMessage, HumanMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    lookup = tool(lookup_order, description="Look up an order's shipping status")
    model = ChatOpenAI(model=MODEL, base_url=base_url, api_key="test", max_retries=0)  # type: ignore[arg-type]
    bound = model.bind_tools([lookup])

    def run(index: int) -> Iterator[None]:
        history: list[BaseMessage] = []
        config: Any = {"metadata": {"user_id": raw_user(index)}}
        for text in TURNS:
            history.append(HumanMessage(text))
            while True:
                message = bound.invoke(history, config=config)
                history.append(message)
                if not message.tool_calls:
                    break
                for call in message.tool_calls:
                    history.append(lookup.invoke(call, config=config))
            yield

    return run


def _langgraph_turns(base_url: str, setup: str) -> Runner:
    """LangGraph: a prebuilt ReAct graph with a tool node; the conversation is ``thread_id``."""
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.prebuilt import create_react_agent

    lookup = tool(lookup_order, description="Look up an order's shipping status")
    model = ChatOpenAI(model=MODEL, base_url=base_url, api_key="test", max_retries=0)  # type: ignore[arg-type]
    graph = create_react_agent(model, [lookup], checkpointer=InMemorySaver(), name=AGENT_NAME)

    def run(index: int) -> Iterator[None]:
        config: Any = {
            "configurable": {"thread_id": conversation_id(setup, index)},
            "metadata": {"user_id": raw_user(index)},
        }
        for text in TURNS:
            graph.invoke({"messages": [HumanMessage(text)]}, config)
            yield

    return run


def _openai_agents_turns(base_url: str) -> Runner:
    """The OpenAI Agents SDK: one agent with a function tool, on the Responses API."""
    import openai
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool

    client = openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
    agent = Agent(
        name=AGENT_NAME,
        instructions="Help with orders.",
        tools=[function_tool(lookup_order)],
        model=OpenAIResponsesModel(MODEL, client),
    )

    def run(index: int) -> Iterator[None]:
        history: list[Any] = []
        for text in TURNS:
            result = Runner.run_sync(agent, [*history, {"role": "user", "content": text}])
            history = result.to_input_list()
            yield

    return run


def _traceloop_sdk_turns(base_url: str) -> Runner:
    """Traceloop's SDK: each turn an ``@agent`` function, the tool a ``@tool`` one."""
    from traceloop.sdk.decorators import agent, tool

    module = sys.modules[__name__]
    module.lookup_order = tool(name=TOOL_NAME)(lookup_order)  # what the chat loop calls
    chat = _openai_chat_turns(base_url, stream_plain=False)

    @agent(name=AGENT_NAME)
    def answer(turns: Iterator[None]) -> None:
        next(turns)

    def run(index: int) -> Iterator[None]:
        turns = chat(index)
        for _ in TURNS:
            answer(turns)
            yield

    return run


# ---- set-ups: instrumentation + agent ---------------------------------------------------------


def _instrument_openinference_openai(provider: Any) -> None:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)


def _instrument_openinference_langchain(provider: Any) -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    LangChainInstrumentor().instrument(tracer_provider=provider)


def _instrument_traceloop_langchain(provider: Any) -> None:
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    LangchainInstrumentor().instrument(tracer_provider=provider)


def _instrument_openllmetry_openai(provider: Any) -> None:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)


def _instrument_openai_v2(provider: Any) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)


def _instrument_openinference_agents(provider: Any) -> None:
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    OpenAIAgentsInstrumentor().instrument(tracer_provider=provider)


def _instrument_traceloop_sdk(provider: Any) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from traceloop.sdk import Traceloop
    from traceloop.sdk.instruments import Instruments

    # Traceloop adds its own processor to the global provider; its exporter is not ours.
    Traceloop.init(
        app_name="matrix",
        exporter=InMemorySpanExporter(),
        disable_batch=True,
        telemetry_enabled=False,
        instruments={Instruments.OPENAI},
    )


def _openinference_user(index: int) -> AbstractContextManager[object]:
    from openinference.instrumentation import using_user

    return using_user(raw_user(index))


def _traceloop_user(index: int) -> AbstractContextManager[object]:
    from traceloop.sdk import Traceloop

    Traceloop.set_association_properties({"user_id": raw_user(index)})
    return nullcontext()


def _no_user(index: int) -> AbstractContextManager[object]:
    return nullcontext()


@dataclasses.dataclass(frozen=True)
class Setup:
    """One row of the matrix."""

    instrument: tuple[Callable[[Any], None], ...]
    agent: Callable[[str, str], Runner]
    #: The framework's own way of setting the raw user id around a conversation.
    user: Callable[[int], AbstractContextManager[object]] = _no_user
    #: The agent name the framework names (``None``: it names none).
    agent_name: str | None = None
    #: The conversation comes from the framework (``thread_id``), not a scope.
    framework_conversation: bool = False
    #: Settings the set-up runs with (the README's table says why).
    env: tuple[tuple[str, str], ...] = ()


SETUPS: Final[dict[str, Setup]] = {
    # Without tool spans, tool calls are known only from the recorded output messages.
    "otel-openai-v2": Setup(
        (_instrument_openai_v2,),
        lambda url, _: _openai_chat_turns(url, stream_plain=True),
        env=(
            ("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental"),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY"),
        ),
    ),
    "openinference-openai": Setup(
        (_instrument_openinference_openai,),
        lambda url, _: _openai_chat_turns(url, stream_plain=True),
        user=_openinference_user,
    ),
    "openinference-openai-responses": Setup(
        (_instrument_openinference_openai,),
        lambda url, _: _openai_responses_turns(url),
        user=_openinference_user,
    ),
    "openllmetry-openai": Setup(
        (_instrument_openllmetry_openai,),
        lambda url, _: _openai_chat_turns(url, stream_plain=True),
    ),
    "openinference-langchain": Setup(
        (_instrument_openinference_langchain,), lambda url, _: _langchain_turns(url)
    ),
    "openinference-langchain+openai": Setup(
        (_instrument_openinference_langchain, _instrument_openinference_openai),
        lambda url, _: _langchain_turns(url),
        user=_openinference_user,
    ),
    "traceloop-langchain": Setup(
        (_instrument_traceloop_langchain,), lambda url, _: _langchain_turns(url)
    ),
    "traceloop-langchain+openai": Setup(
        (_instrument_traceloop_langchain, _instrument_openllmetry_openai),
        lambda url, _: _langchain_turns(url),
    ),
    "openinference-langgraph": Setup(
        (_instrument_openinference_langchain,),
        _langgraph_turns,
        framework_conversation=True,
    ),
    "traceloop-langgraph": Setup(
        (_instrument_traceloop_langchain,),
        _langgraph_turns,
        agent_name=AGENT_NAME,
        framework_conversation=True,
    ),
    "openinference-openai-agents": Setup(
        (_instrument_openinference_agents,),
        lambda url, _: _openai_agents_turns(url),
        user=_openinference_user,
        agent_name=AGENT_NAME,
    ),
    "traceloop-sdk": Setup(
        (_instrument_traceloop_sdk,),
        lambda url, _: _traceloop_sdk_turns(url),
        user=_traceloop_user,
        agent_name=AGENT_NAME,
    ),
}


def run(setup_name: str, base_url: str, out: Path) -> None:
    """Run one set-up's conversations and write its spans and rows to ``out``."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from opentelemetry import trace
    from opentelemetry.exporter.conversation_analytics.extract import rows_from_spans
    from opentelemetry.instrumentation.conversation import conversation
    from opentelemetry.instrumentation.conversation.instrumentor import ConversationInstrumentor

    setup = SETUPS[setup_name]
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)  # Traceloop and the Agents SDK use the global one
    ConversationInstrumentor().instrument(tracer_provider=provider)
    for instrument in setup.instrument:
        instrument(provider)
    runner = setup.agent(base_url, setup_name)
    for index in range(CONVERSATIONS):
        cid = conversation_id(setup_name, index)
        turns = runner(index)
        with setup.user(index):
            if setup.framework_conversation:
                for _ in turns:
                    pass
                scope = conversation(cid)
            else:
                scope = conversation(cid, user_id=raw_user(index))
            with scope as conv:
                for _ in turns:
                    pass
                if index < COMPLETED:
                    conv.complete()
    provider.force_flush()
    finished = spans.get_finished_spans()
    out.mkdir(parents=True, exist_ok=True)
    (out / "spans.pb").write_bytes(encode_spans(finished).SerializeToString())
    rows, rejected = rows_from_spans(finished)
    document = {"rows": [dataclasses.asdict(row) for row in rows], "rejected": dict(rejected)}
    (out / "rows.json").write_text(json.dumps(document))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], Path(sys.argv[3]))

"""Turns from a conversation's finished span tree: which GenAI spans answer one user message.

Instrumentations name their spans at different moments (LangChain tracers and Traceloop's
decorators set the span kind after start, OpenInference sets most attributes at the end), so turns
are decided only once a conversation's local span tree has ended, from every span's final
attributes. The rules, over the spans of one tree:

- a **turn** is an outermost GenAI operation: an agent invocation, a model call, or a chain /
  workflow / graph run that contains a model call or an agent; model calls, tools and chains
  inside it belong to it;
- two outermost operations where one lies within the other's time span (a LangChain model span
  and the OpenAI client span it caused, which LangChain's tracers do not parent) are one;
- an outermost model call that follows a model call which asked for tools answers the tool
  results: it continues that turn (a bare client's tool loop), and the turn's answer is the
  first model call that asks for none;
- tools are the outermost tool spans of the turn; a turn without tool spans takes the tool calls
  its model calls asked for, when the instrumentation recorded the output.

This module only decides; the span processor tracks the spans and emits the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.instrumentation.conversation.genai import SpanRole

_OPENERS = frozenset({SpanRole.AGENT, SpanRole.MODEL})


@dataclass(slots=True, eq=False)
class SpanNode:
    """One span of a conversation's local tree: its parent in the tree, and its final facts."""

    parent: SpanNode | None
    role: SpanRole | None = None
    name: str = ""
    start_ns: int = 0
    end_ns: int = 0
    agent: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    tool: str | None = None
    error_type: str | None = None
    asks_for_tools: bool = False
    tool_calls: tuple[str, ...] = ()
    user: str | None = None
    #: The last user message of a model call's captured input (read only when rephrase
    #: detection is on; dropped with the node once the turn is scored).
    user_text: str | None = None
    #: The span this node's events are attached under (the SDK span context), set by the caller.
    context: object = None


@dataclass(slots=True)
class ToolCall:
    name: str
    time_ns: int
    error_type: str | None = None


@dataclass(slots=True, eq=False)
class Turn:
    """One user turn as decided from a tree (``opened``: its user message is in this tree;
    ``answered``: its answer is, i.e. its last model call did not ask for tools)."""

    number: int
    first: SpanNode
    opened: bool
    start_ns: int
    end_ns: int
    nodes: list[SpanNode] = field(default_factory=list)
    tools: list[ToolCall] = field(default_factory=list)
    agent: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    error_type: str | None = None
    user: str | None = None
    #: The user's message that opened the turn, when captured (see ``SpanNode.user_text``).
    user_text: str | None = None
    answered: bool = False


@dataclass(slots=True)
class TurnState:
    """A conversation's turn count in this process, and whether its last model call asked for
    tools (so the next outermost model call continues the turn)."""

    turn: int = 0
    awaiting_tools: bool = False
    #: Tool calls of the current turn counted from model output: a tool span of the same
    #: name in a later tree (the app ran the tool outside the model call's tree) is that call.
    output_tools: list[str] = field(default_factory=list)


def _genai_parent(node: SpanNode) -> SpanNode | None:
    parent = node.parent
    while parent is not None and parent.role is None:
        parent = parent.parent
    return parent


def assign_turns(nodes: list[SpanNode], state: TurnState) -> list[Turn]:
    """The turns of one finished tree, numbered on from ``state`` (which is updated)."""
    genai = [node for node in nodes if node.role is not None]
    if not genai:
        return []
    children: dict[int, list[SpanNode]] = {}
    tops: list[SpanNode] = []
    for node in genai:
        parent = _genai_parent(node)
        if parent is None:
            tops.append(node)
        else:
            children.setdefault(id(parent), []).append(node)
    tops.sort(key=lambda node: (node.start_ns, -node.end_ns))
    groups: list[tuple[SpanNode, list[SpanNode]]] = []  # (outermost, its subtree), by start
    for top in tops:
        subtree = _subtree(top, children)
        if groups and _within(top, groups[-1][0]):
            groups[-1][1].extend(subtree)  # the same operation, seen by a second instrumentation
        else:
            groups.append((top, subtree))
    turns: list[Turn] = []
    current: Turn | None = None
    for top, subtree in groups:
        roles = {node.role for node in subtree}
        if top.role is SpanRole.TOOL or (top.role is SpanRole.CHAIN and not roles & _OPENERS):
            if top.role is SpanRole.TOOL and state.turn:
                current = current or _continued(state.turn, top)
                if current not in turns:
                    turns.append(current)
                _extend(current, top, subtree)
            continue
        continues = top.role is SpanRole.MODEL and state.awaiting_tools and state.turn > 0
        if not continues:
            state.turn += 1
            state.output_tools.clear()
            current = Turn(state.turn, top, True, top.start_ns, top.end_ns)
            turns.append(current)
        elif current is None:
            current = _continued(state.turn, top)
            turns.append(current)
        _extend(current, top, subtree)
        state.awaiting_tools = top.role is SpanRole.MODEL and any(
            node.asks_for_tools or node.tool_calls
            for node in subtree
            if node.role is SpanRole.MODEL
        )
        current.answered = not state.awaiting_tools
    for turn in turns:
        _summarise(turn, state)
    return turns


def _continued(number: int, top: SpanNode) -> Turn:
    return Turn(number, top, False, top.start_ns, top.end_ns)


def _subtree(top: SpanNode, children: dict[int, list[SpanNode]]) -> list[SpanNode]:
    out = [top]
    index = 0
    while index < len(out):
        out.extend(children.get(id(out[index]), ()))
        index += 1
    return out


def _within(inner: SpanNode, outer: SpanNode) -> bool:
    return outer.start_ns <= inner.start_ns and inner.end_ns <= outer.end_ns


def _extend(turn: Turn, top: SpanNode, subtree: list[SpanNode]) -> None:
    turn.nodes.extend(subtree)
    turn.end_ns = max(turn.end_ns, top.end_ns)
    if top.role is not SpanRole.TOOL:
        turn.error_type = top.error_type


def _summarise(turn: Turn, state: TurnState) -> None:
    """Agent, models, user and tool calls of a turn, from its spans in start order."""
    nodes = sorted(turn.nodes, key=lambda node: node.start_ns)
    in_turn = {id(node) for node in nodes}
    turn.agent = next((n.agent for n in nodes if n.agent and n.role is SpanRole.AGENT), None)
    if turn.agent is None:
        turn.agent = next((node.agent for node in nodes if node.agent), None)
    turn.user = next((node.user for node in nodes if node.user), None)
    models = [node for node in nodes if node.role is SpanRole.MODEL]
    turn.user_text = next((m.user_text for m in models if m.user_text), None)
    turn.request_model = next((m.request_model for m in models if m.request_model), None)
    answered = [m for m in models if m.response_model]
    if answered:
        turn.response_model = max(answered, key=lambda m: m.end_ns).response_model
    tools = [
        node
        for node in nodes
        if node.role is SpanRole.TOOL and not _has_ancestor_tool(node, in_turn)
    ]
    if tools:
        for node in sorted(tools, key=lambda node: node.end_ns):
            name = node.tool or node.name
            if turn.number == state.turn and name in state.output_tools:
                state.output_tools.remove(name)  # already counted from the model's output
            else:
                turn.tools.append(ToolCall(name, node.end_ns, node.error_type))
        return
    counted: list[SpanNode] = []
    for model in models:
        if not model.tool_calls or any(_within(model, other) for other in counted):
            continue  # a second instrumentation's span of a call already counted
        counted.append(model)
        turn.tools.extend(ToolCall(name, model.end_ns) for name in model.tool_calls)
        if turn.number == state.turn:
            state.output_tools.extend(model.tool_calls)


def _has_ancestor_tool(node: SpanNode, in_turn: set[int]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.role is SpanRole.TOOL and id(parent) in in_turn:
            return True
        parent = parent.parent
    return False

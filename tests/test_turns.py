"""Turn assignment over a finished span tree (pure: no SDK), the rules every instrumentation's
spans reach through the span processor."""

from __future__ import annotations

import pytest

from opentelemetry.instrumentation.conversation.genai import SpanRole
from opentelemetry.instrumentation.conversation.turns import SpanNode, TurnState, assign_turns

A, C, M, T = SpanRole.AGENT, SpanRole.CHAIN, SpanRole.MODEL, SpanRole.TOOL


def node(
    role: SpanRole | None,
    start: int,
    end: int,
    parent: SpanNode | None = None,
    **facts: object,
) -> SpanNode:
    made = SpanNode(parent, role=role, name=f"{role}-{start}", start_ns=start, end_ns=end)
    for key, value in facts.items():
        setattr(made, key, value)
    return made


def summary(nodes: list[SpanNode], state: TurnState | None = None) -> list[tuple[object, ...]]:
    """(number, opened, answered, tool names) per turn."""
    turns = assign_turns(nodes, state or TurnState())
    return [(t.number, t.opened, t.answered, [c.name for c in t.tools]) for t in turns]


class TestOutermostOperations:
    def test_agent_with_model_and_tool_is_one_turn(self) -> None:
        """Model calls and tools inside an agent span belong to its turn."""
        agent = node(A, 0, 100)
        nodes = [agent, node(M, 10, 20, agent), node(T, 30, 40, agent, tool="lookup")]
        assert summary(nodes) == [(1, True, True, ["lookup"])]

    def test_chain_with_model_is_a_turn(self) -> None:
        """A chain (LangChain run, Traceloop workflow) that calls a model is the turn."""
        chain = node(C, 0, 100)
        inner = node(C, 5, 90, chain)
        nodes = [chain, inner, node(M, 10, 20, inner), node(M, 30, 40, inner)]
        assert summary(nodes) == [(1, True, True, [])]

    def test_chain_without_model_is_no_turn(self) -> None:
        """A chain that never calls a model (a retriever step, a parser) opens nothing."""
        assert summary([node(C, 0, 10)]) == []

    def test_non_genai_spans_between_are_transparent(self) -> None:
        """An HTTP span between an agent and its model call does not make the call a turn."""
        agent = node(A, 0, 100)
        http = node(None, 5, 50, agent)
        assert summary([agent, http, node(M, 10, 20, http)]) == [(1, True, True, [])]

    def test_two_instrumentations_of_one_call_count_once(self) -> None:
        """An unparented span lying within another (LangChain's model span and the OpenAI
        client span it caused) is the same operation."""
        outer = node(M, 0, 100, response_model="gpt-x")
        inner = node(M, 10, 90, response_model="gpt-x-0806")
        turns = assign_turns([outer, inner], TurnState())
        assert [t.number for t in turns] == [1]
        assert turns[0].response_model == "gpt-x"  # the last to end

    def test_late_roles_are_read(self) -> None:
        """Roles are only needed at assignment: a node whose role arrived at the span's end
        counts like any other."""
        chain = node(None, 0, 100)
        model = node(None, 10, 20, chain)
        chain.role, model.role = C, M
        assert summary([chain, model]) == [(1, True, True, [])]


class TestToolLoops:
    def test_model_answering_tool_results_continues_the_turn(self) -> None:
        """Bare client in one tree: ask for tools, run one, answer; then a new turn."""
        nodes = [
            node(M, 0, 10, asks_for_tools=True),
            node(T, 11, 12, tool="lookup"),
            node(M, 13, 20),
            node(M, 30, 40),
        ]
        assert summary(nodes) == [(1, True, True, ["lookup"]), (2, True, True, [])]

    def test_loop_across_trees_answers_in_the_last(self) -> None:
        """Each call its own tree: the turn opens in the first and is answered in the last."""
        state = TurnState()
        first = summary([node(M, 0, 10, tool_calls=("lookup",))], state)
        second = summary([node(M, 20, 30)], state)
        third = summary([node(M, 40, 50)], state)
        assert first == [(1, True, False, ["lookup"])]
        assert second == [(1, False, True, [])]
        assert third == [(2, True, True, [])]

    def test_tool_calls_from_output_when_no_tool_span(self) -> None:
        """Tool-call names the instrumentation recorded on the model's output are the turn's
        tool calls, once for two spans of one call."""
        outer = node(M, 0, 100, tool_calls=("search",))
        inner = node(M, 10, 90, tool_calls=("search",))
        assert summary([outer, inner]) == [(1, True, False, ["search"])]

    def test_tool_span_in_a_later_tree_is_the_call_already_counted(self) -> None:
        """The app ran the tool the model asked for outside the model call's tree: counted
        once, from the output."""
        state = TurnState()
        first = summary([node(M, 0, 10, tool_calls=("lookup",))], state)
        tool = summary([node(T, 11, 12, tool="lookup")], state)
        other = summary([node(T, 13, 14, tool="refund")], state)
        assert first == [(1, True, False, ["lookup"])]
        assert tool == [(1, False, False, [])]
        assert other == [(1, False, False, ["refund"])]

    def test_tool_spans_win_over_output_names(self) -> None:
        """With tool spans present, the output's names are not counted a second time."""
        agent = node(A, 0, 100)
        nodes = [agent, node(M, 1, 9, agent, tool_calls=("x",)), node(T, 10, 20, agent, tool="x")]
        assert summary(nodes) == [(1, True, True, ["x"])]

    def test_nested_tool_spans_count_once(self) -> None:
        """A tool span inside a tool span (two instrumentations of one tool) is one call."""
        agent = node(A, 0, 100)
        outer = node(T, 10, 50, agent, tool="lookup")
        assert summary([agent, outer, node(T, 20, 40, outer, tool="lookup")]) == [
            (1, True, True, ["lookup"])
        ]

    def test_tool_alone_joins_the_current_turn(self) -> None:
        """A tool span outside any agent (run by the app between calls) is the last turn's."""
        state = TurnState()
        summary([node(M, 0, 10, asks_for_tools=True)], state)
        assert summary([node(T, 20, 30, tool="t")], state) == [(1, False, False, ["t"])]

    def test_tool_before_any_turn_is_ignored(self) -> None:
        """No turn to join: nothing is invented."""
        assert summary([node(T, 0, 10, tool="t")]) == []


class TestFacts:
    def test_agent_name_prefers_agent_spans(self) -> None:
        """The turn's agent is an agent span's name, else any span's."""
        agent = node(A, 0, 100, agent="planner")
        turn = assign_turns([agent, node(M, 10, 20, agent, agent="svc")], TurnState())[0]
        assert turn.agent == "planner"

    @pytest.mark.parametrize("failed_role", [A, M])
    def test_error_of_the_outermost_operation(self, failed_role: SpanRole) -> None:
        """The turn's error is its outermost operation's."""
        top = node(failed_role, 0, 100, error_type="Timeout")
        assert assign_turns([top], TurnState())[0].error_type == "Timeout"

    def test_numbering_goes_on_from_state(self) -> None:
        """Turns number on from the conversation's state."""
        state = TurnState(turn=4)
        assert [t[0] for t in summary([node(A, 0, 1), node(A, 2, 3)], state)] == [5, 6]
        assert state.turn == 6

"""One configuration: every variable in one module, one boolean parser, the README agrees."""

from __future__ import annotations

import ast
import dataclasses
import logging
import re
from pathlib import Path

import pytest

from opentelemetry.exporter.conversation_analytics import ConversationAnalyticsExporter
from opentelemetry.exporter.conversation_analytics.collector.config import CollectorConfig
from opentelemetry.exporter.conversation_analytics.store import ConversationStore
from opentelemetry.instrumentation.conversation import environment_variables as env

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "exporter" / "src", ROOT / "instrumentation" / "src"]
MODULE = Path(env.__file__).resolve()
PREFIX = "CONVERSATION_ANALYTICS_"
NAMES = {item.name for item in env.VARIABLES}


def _readme_rows() -> list[tuple[set[str], str]]:
    """(variables named, default cell) of every row of the README's configuration tables."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        names = set(re.findall(PREFIX + r"[A-Z_]+", line))
        if line.startswith("|") and names and len(cells) == 3:
            rows.append((names, cells[2]))
    return rows


def _normalise(text: object) -> str:
    if isinstance(text, bool):
        return "on" if text else "off"
    if isinstance(text, float) and text.is_integer():
        text = int(text)
    return str(text).replace("`", "").removesuffix(" s")


class TestOneModule:
    def test_every_constant_is_listed_with_a_default(self) -> None:
        """The module's name constants and its VARIABLES table are the same set."""
        constants = {
            value
            for key, value in vars(env).items()
            if key.startswith(PREFIX) and isinstance(value, str)
        }
        assert constants == NAMES
        assert len(NAMES) == len(env.VARIABLES)  # no variable listed twice

    def test_no_other_module_spells_a_variable_name(self) -> None:
        """Outside the module, code refers to names; only docstrings and comments spell them."""
        offenders = []
        for root in SOURCES:
            for path in root.rglob("*.py"):
                if path.resolve() == MODULE:
                    continue
                tree = ast.parse(path.read_text())
                docstrings = {
                    id(node.value)
                    for node in ast.walk(tree)
                    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                }
                for node in ast.walk(tree):
                    if (
                        isinstance(node, ast.Constant)
                        and isinstance(node.value, str)
                        and node.value.startswith(PREFIX)
                        and id(node) not in docstrings
                    ):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        assert offenders == []

    @pytest.mark.parametrize("item", dataclasses.fields(CollectorConfig), ids=lambda f: f.name)
    def test_every_collector_setting_has_its_variable_and_default(
        self, item: dataclasses.Field[object]
    ) -> None:
        """Each collector field reads a defined variable whose stated default is the field's."""
        name = CollectorConfig.env_name(item.name)
        (variable,) = [entry for entry in env.VARIABLES if entry.name == name]
        assert _normalise(variable.default) == _normalise(
            item.metadata.get("default_text", item.default)
        )


class TestReadme:
    def test_the_tables_name_every_variable_and_nothing_else(self) -> None:
        """Every defined variable has a README row; every row names a defined variable."""
        named = set().union(*(names for names, _ in _readme_rows()))
        assert named == NAMES

    def test_every_row_states_the_modules_default(self) -> None:
        """A row's default column is the module's default of each variable it names."""
        defaults = {item.name: item.default for item in env.VARIABLES}
        wrong = {
            name: (cell, defaults[name])
            for names, cell in _readme_rows()
            for name in names
            if cell != defaults[name]
        }
        assert wrong == {}


class TestParseBool:
    @pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "on", "enabled", "Enabled"])
    def test_true(self, raw: str) -> None:
        """Every accepted spelling of on, in any case and with spaces around it."""
        assert env.parse_bool(raw) is True

    @pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", "disabled"])
    def test_false(self, raw: str) -> None:
        """Every accepted spelling of off."""
        assert env.parse_bool(raw) is False

    @pytest.mark.parametrize("raw", ["maybe", "2", "tru", "y e s"])
    def test_anything_else_is_an_error_listing_the_accepted_values(self, raw: str) -> None:
        """No silent guess: the message says what would have been accepted."""
        with pytest.raises(ValueError, match="enabled/disabled"):
            env.parse_bool(raw)


class TestStoreContentMeansOneThing:
    """``STORE_CONTENT=enabled`` stored text in the exporter but not in the collector."""

    @pytest.mark.parametrize(("raw", "expected"), [("enabled", True), ("off", False)])
    def test_exporter_and_collector_agree(
        self,
        raw: str,
        expected: bool,
        store: ConversationStore,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The exporter and the collector read the same value the same way."""
        monkeypatch.setenv(env.CONVERSATION_ANALYTICS_STORE_CONTENT, raw)
        exporter = ConversationAnalyticsExporter(store)
        try:
            assert exporter._store_content is expected
        finally:
            exporter.shutdown()
        environ = {env.CONVERSATION_ANALYTICS_STORE_CONTENT: raw}
        assert CollectorConfig.load(environ=environ).store_content is expected

    def test_a_bad_value_stops_the_collector_with_the_variable_named(self) -> None:
        """The collector refuses to start on a value it cannot read."""
        environ = {env.CONVERSATION_ANALYTICS_STORE_CONTENT: "maybe"}
        with pytest.raises(ValueError, match="CONVERSATION_ANALYTICS_STORE_CONTENT must be"):
            CollectorConfig.load(environ=environ)

    def test_a_bad_value_in_the_agent_is_logged_once_and_the_default_used(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Inside the agent nothing raises: one warning, then the default."""
        name = env.CONVERSATION_ANALYTICS_DETECT_REPHRASES
        monkeypatch.setenv(name, "sometimes")
        monkeypatch.setattr(env, "_warned", set())
        with caplog.at_level(logging.WARNING, logger=env.__name__):
            assert env.env_flag(name, False) is False
            assert env.env_flag(name, True) is True
        assert [record.getMessage().split(":")[0] for record in caplog.records] == [name]

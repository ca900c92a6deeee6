"""What Grafana and the ClickHouse plugin (grafana-clickhouse-datasource v4) do to a panel's SQL.

A query goes through three steps before ClickHouse sees it, reproduced here in the same order:

1. the plugin's frontend replaces ``$__conditionalAll(condition, $var)`` with ``1=1`` when the
   variable's current value is All (``$__all``) or empty, else with ``condition``
   (``CHDatasource.applyConditionalAll``: innermost-last, arguments split at top-level commas);
2. Grafana interpolates template variables (``$var``, ``${var}``, ``${var:format}``) with the
   plugin's default format (a multi-value joins as ``'a','b'``, a single value stays bare); a
   custom All value (``allValue``) is inserted raw, whatever the format;
3. the plugin's backend expands its macros (``pkg/macros/macros.go``): ``$__timeFilter(c)`` →
   ``c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)``, ``$__fromTime`` →
   ``toDateTime(<from s>)``, ``$__timeInterval(c)`` →
   ``toStartOfInterval(toDateTime(c), INTERVAL <n> second)``, ``$__interval_s`` → ``<n>``, etc.
   Unknown macros are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

ALL = "$__all"


@dataclass(frozen=True)
class Selection:
    """A template variable's current state: its chosen values (or All) and its options."""

    values: tuple[str, ...] = (ALL,)
    options: tuple[str, ...] = ()
    all_value: str | None = None
    multi: bool = True

    @property
    def is_all(self) -> bool:
        return ALL in self.values

    @property
    def current(self) -> str:
        """``current.value.toString()`` in the browser: arrays join with commas."""
        return ",".join(self.values)

    def resolved(self) -> list[str] | str:
        """What Grafana formats: the chosen values, all options for All, or a custom All raw."""
        if self.is_all:
            return list(self.options)
        if self.multi:
            return list(self.values)
        return self.values[0] if self.values else ""


# ---- step 1: $__conditionalAll (plugin frontend) ------------------------------------------------

_CONDITIONAL_ALL = "$__conditionalAll("
_VARIABLE_IN_ARG = re.compile(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+")


def _macro_args(sql: str, open_paren: int) -> list[str]:
    """Arguments of the call whose ``(`` is at ``open_paren``, split at its top-level commas."""
    args: list[str] = []
    depth = 0
    start = open_paren + 1
    for index in range(open_paren, len(sql)):
        char = sql[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:index])
                return args
        elif char == "," and depth == 1:
            args.append(sql[start:index])
            start = index + 1
    return []


def apply_conditional_all(sql: str, variables: Mapping[str, Selection]) -> str:
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        args = _macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if len(args) != 2:
            return sql
        phrase = args[0]
        found = _VARIABLE_IN_ARG.search(args[1].strip())
        if found:
            selection = variables.get(found.group(0))
            value = selection.current if selection is not None else None
            if value in ("", ALL):
                phrase = "1=1"
        sql = sql.replace(f"{_CONDITIONAL_ALL}{args[0]},{args[1]})", phrase, 1)
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql


# ---- step 2: template variables (Grafana's templateSrv) -----------------------------------------

#: Grafana's variable syntax: $name, [[name:format]], ${name.fieldPath:format}.
VARIABLE_SYNTAX = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)


def _single_quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _format(value: list[str] | str, fmt: str | None) -> str:
    values = value if isinstance(value, list) else [value]
    if fmt is None:  # the ClickHouse plugin's default format
        return "'" + "','".join(values) + "'" if isinstance(value, list) else value
    if fmt == "singlequote":
        return ",".join(_single_quote(v) for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "raw":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "regex":
        escaped = [re.escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    raise ValueError(f"format {fmt!r} is not modelled here")


def interpolate(sql: str, variables: Mapping[str, Selection]) -> str:
    """Replace every defined variable; built-ins and macros (``$__...``) are left alone."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        selection = variables.get(name)
        if selection is None:
            return match.group(0)
        if selection.is_all and selection.all_value is not None:
            return selection.all_value  # custom All values skip formatting
        return _format(selection.resolved(), fmt)

    return VARIABLE_SYNTAX.sub(replace, sql)


# ---- step 3: macros (plugin backend) ------------------------------------------------------------


@dataclass(frozen=True)
class QueryContext:
    """The time range and interval Grafana sends with a query."""

    time_from: datetime
    time_to: datetime
    interval_seconds: float = 60.0
    extra: dict[str, str] = field(default_factory=dict)


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _date(moment: datetime) -> str:
    return f"toDate('{moment.strftime('%Y-%m-%d')}')"


def _expand(name: str, args: list[str] | None, ctx: QueryContext) -> str | None:
    start, end = ctx.time_from, ctx.time_to
    frm, to = f"toDateTime({_seconds(start)})", f"toDateTime({_seconds(end)})"
    frm_ms = f"fromUnixTimestamp64Milli({_millis(start)})"
    to_ms = f"fromUnixTimestamp64Milli({_millis(end)})"
    interval_s = max(int(ctx.interval_seconds), 1)
    interval_ms = max(int(ctx.interval_seconds * 1000), 1)
    no_args = {
        "fromTime": frm,
        "toTime": to,
        "fromTime_ms": frm_ms,
        "toTime_ms": to_ms,
        "interval_s": str(interval_s),
    }
    if name in no_args:
        return no_args[name]

    def one() -> str:
        if args is None or len(args) != 1:
            raise ValueError(f"$__{name} expects one argument, got {args!r}")
        return args[0]

    if name == "timeFilter":
        col = one()
        return f"{col} >= {frm} AND {col} <= {to}"
    if name == "timeFilter_ms":
        col = one()
        return f"{col} >= {frm_ms} AND {col} <= {to_ms}"
    if name == "dateFilter":
        col = one()
        return f"{col} >= {_date(start)} AND {col} <= {_date(end)}"
    if name == "timeFrom":
        return f"{one()} >= {frm}"
    if name == "timeTo":
        return f"{one()} <= {to}"
    if name == "timeInterval":
        return f"toStartOfInterval(toDateTime({one()}), INTERVAL {interval_s} second)"
    if name == "timeInterval_ms":
        return f"toStartOfInterval(toDateTime64({one()}, 3), INTERVAL {interval_ms} millisecond)"
    return None


_MACRO = re.compile(r"\$__(\w+)")


def expand_macros(sql: str, ctx: QueryContext) -> str:
    """The backend's macro pass, innermost-first; unknown macros stay (as the plugin does)."""
    out: list[str] = []
    position = 0
    while True:
        match = _MACRO.search(sql, position)
        if match is None:
            out.append(sql[position:])
            return "".join(out)
        out.append(sql[position : match.start()])
        name = match.group(1)
        end = match.end()
        args: list[str] | None = None
        if end < len(sql) and sql[end] == "(":
            raw = _macro_args(sql, end)
            if raw:
                args = [expand_macros(arg, ctx).strip() for arg in raw]
                end = end + 1 + sum(len(a) for a in raw) + len(raw)  # args, commas, ")"
        expanded = _expand(name, args, ctx)
        if expanded is None:
            out.append(sql[match.start() : end])
        else:
            out.append(expanded)
        position = end


def prepare(sql: str, variables: Mapping[str, Selection], ctx: QueryContext) -> str:
    """A panel's SQL as the plugin sends it to ClickHouse."""
    return expand_macros(interpolate(apply_conditional_all(sql, variables), variables), ctx)

"""OTLP metrics as Prometheus sees them, and what a PromQL query selects, for the alert and dashboard tests.

The translation is the usual one (OpenTelemetry Collector's prometheus exporters, Prometheus' OTLP
receiver), as observability/telemetry.py describes it: dots become underscores, the unit becomes a suffix
(annotations in braces are dropped), counters end in ``_total``, histograms become ``_bucket`` (with
``le``), ``_sum`` and ``_count``. Queries are parsed with promql-parser, not with regular expressions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import promql_parser

from observability.collector import Point, Received

UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "": ""}
# Grafana's interval variables, replaced by a duration so that the query parses.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def base_name(point: Point) -> str:
    """The Prometheus name of a metric, before the histogram suffixes."""
    if point.unit.startswith("{"):
        suffix = ""
    elif point.unit in UNIT_SUFFIXES:
        suffix = UNIT_SUFFIXES[point.unit]
    else:
        raise ValueError(f"no Prometheus suffix known for unit {point.unit!r} of {point.name}; "
                         f"known: {sorted(UNIT_SUFFIXES)} and annotations like '{{request}}'")
    name = point.name.replace(".", "_")
    if suffix and not name.endswith("_" + suffix):
        name += "_" + suffix
    # Only monotonic sums are Prometheus counters; an up-down counter becomes a gauge.
    return name + "_total" if point.kind == "Sum" and point.monotonic else name


def series_names(point: Point) -> list[str]:
    base = base_name(point)
    return [base + s for s in ("_bucket", "_sum", "_count")] if point.kind == "Histogram" else [base]


Labels = dict[str, set[str]]  # label -> the values seen


def exported_series(*runs: Received) -> dict[str, Labels]:
    """Prometheus series name -> its labels and their values, over everything the runs received."""
    series: dict[str, Labels] = defaultdict(lambda: defaultdict(set))
    for received in runs:
        for point in received.points:
            for name in series_names(point):
                labels = series[name]
                for key, value in point.attributes.items():
                    labels[key.replace(".", "_")].add(str(value))
                if name.endswith("_bucket"):
                    labels["le"].update(str(b) for b in point.bounds)
    return series


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # =, !=, =~, !~
    value: str


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class Grouping:
    """``sum by (labels) (...)``: the labels, and the metrics selected inside."""

    labels: tuple[str, ...]
    metrics: tuple[str, ...]


# promql_parser.MatchOp is neither hashable nor named: its str() is "MatchOp.Re" and so on.
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def parse(query: str) -> promql_parser.Expr:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    return promql_parser.parse(query)


def selectors(query: str) -> list[Selector]:
    """Every vector selector of the query: metric name and label matchers."""
    found: list[Selector] = []

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple(Matcher(m.name, _OPS[str(m.op)], m.value) for m in node.matchers.matchers
                             if m.name != "__name__")
            found.append(Selector(node.name, matchers))

    promql_parser.walk(parse(query), visit)
    return found


def groupings(query: str) -> list[Grouping]:
    """The ``by (...)`` label lists of the query's aggregations, each with the metrics under it."""
    found: list[Grouping] = []

    def visit(node) -> None:
        modifier = getattr(node, "modifier", None) if isinstance(node, promql_parser.AggregateExpr) else None
        if modifier is not None and modifier.type == promql_parser.AggModifierType.By and modifier.labels:
            inner = selectors(str(node.expr))
            found.append(Grouping(tuple(modifier.labels), tuple(s.metric for s in inner)))

    promql_parser.walk(parse(query), visit)
    return found

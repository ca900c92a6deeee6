"""Reading Prometheus samples from an explicit registry in tests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry


def metric_value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of a series' samples whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total

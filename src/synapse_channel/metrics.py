"""Counters and histograms for ``/metrics``, and the Prometheus text format they are written in.

Written by hand rather than with ``prometheus_client``: the hub needs a dozen
series, the text format is a few lines of rules, and a dependency that
registers global collectors at import would cost every ``synapse`` start.
Nothing here does I/O or reads the clock; the journal and the hub feed it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: Seconds: an fsync'd SQLite commit takes ~0.1-20 ms on a healthy disk; the top buckets catch a sick one.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Distinct label values one counter keeps before folding new ones into ``other`` (labels come from the wire).
MAX_LABELS = 64
_LABEL_OK = re.compile(r"[a-z][a-z0-9_]{0,47}")


@dataclass(slots=True)
class Histogram:
    """A cumulative-bucket histogram (Prometheus ``le`` semantics): cheap enough to observe every commit."""

    bounds: Sequence[float] = COMMIT_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0
    last: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        """Count one sample (seconds)."""
        self.total += value
        self.count += 1
        self.last = value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs, ending with ``+Inf``, as the exposition wants them."""
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append((_number(bound), running))
        out.append(("+Inf", self.count))
        return out


@dataclass(slots=True)
class LabelledCounter:
    """Counts per label value, with the label set bounded (a hostile client cannot grow it)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, n: int = 1) -> None:
        """Add ``n`` under ``label`` (``other`` when the label is odd or the set is full)."""
        if label not in self.counts and (len(self.counts) >= MAX_LABELS or not _LABEL_OK.fullmatch(label)):
            label = "other"
        self.counts[label] = self.counts.get(label, 0) + n


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class Exposition:
    """Builds one ``/metrics`` body: each family's ``# HELP`` and ``# TYPE`` once, then its samples."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, prefix: str = "synapse_") -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def _family(self, name: str, kind: str, help_text: str) -> str:
        full = self.prefix + name
        self.lines.append(f"# HELP {full} {_escape(help_text)}")
        self.lines.append(f"# TYPE {full} {kind}")
        return full

    def gauge(self, name: str, help_text: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """One gauge sample."""
        full = self._family(name, "gauge", help_text)
        self.lines.append(f"{full}{_labels(labels or {})} {_number(value)}")

    def counter(self, name: str, help_text: str, value: float) -> None:
        """One counter sample (``name`` without ``_total``; it is added)."""
        full = self._family(name, "counter", help_text)
        self.lines.append(f"{full}_total {_number(value)}")

    def labelled(self, name: str, kind: str, help_text: str, label: str, values: Iterable[tuple[str, float]]) -> None:
        """A family of samples split by one label (``_total`` appended for counters)."""
        full = self._family(name, kind, help_text)
        suffix = "_total" if kind == "counter" else ""
        for value_label, value in sorted(values):
            self.lines.append(f"{full}{suffix}{_labels({label: value_label})} {_number(value)}")

    def samples(self, name: str, kind: str, help_text: str, values: Iterable[tuple[Mapping[str, str], float]]) -> None:
        """A family of samples with any labels (``_total`` appended for counters)."""
        full = self._family(name, kind, help_text)
        suffix = "_total" if kind == "counter" else ""
        for labels, value in values:
            self.lines.append(f"{full}{suffix}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, hist: Histogram) -> None:
        """A histogram: cumulative buckets, ``_sum`` and ``_count``."""
        full = self._family(name, "histogram", help_text)
        for le, n in hist.cumulative():
            self.lines.append(f'{full}_bucket{{le="{le}"}} {n}')
        self.lines.append(f"{full}_sum {_number(hist.total)}")
        self.lines.append(f"{full}_count {hist.count}")

    def render(self) -> str:
        """The body, newline-terminated as the format requires."""
        return "\n".join(self.lines) + "\n"

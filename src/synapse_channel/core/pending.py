"""Running pending-mail counts for ``who``, and their JSON kept encoded per name.

`who` lists a count for every name with mail waiting; with 10k offline
targets, recounting them (bisects over 10k lists) and re-encoding the map on
every request cost ~30 ms of event loop. The mailbox moves these counts as
it stores and acks, and this class keeps each name's ``"name":count``
fragment, re-encoded when that count moves, so a ``who`` costs one string
join (cached until a count changes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .outcome import compact_json


@dataclass(slots=True)
class RunningCounts:
    """Pending count per name with mail; ``members`` maps a project to its names here (project mail)."""

    counts: dict[str, int] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    #: Names whose count an ack may have changed, recounted by the mailbox before it returns.
    stale: set[str] = field(default_factory=set)
    #: Each name's ``"name":count``, re-encoded when its count moves (so the first ``who`` is no dearer).
    _fragments: dict[str, str] = field(default_factory=dict)
    _joined: str | None = None

    def set(self, name: str, count: int) -> None:
        if name not in self.counts and "/" in name:
            self.members.setdefault(name.split("/", 1)[0], set()).add(name)
        if self.counts.get(name) != count:
            self.counts[name] = count
            self._fragments[name] = f"{encode_key(name)}:{count}"
            self._joined = None

    def add(self, name: str, delta: int) -> None:
        count = self.counts[name] = self.counts[name] + delta
        self._fragments[name] = f"{encode_key(name)}:{count}"
        self._joined = None

    def drop(self, name: str) -> None:
        if self.counts.pop(name, None) is None:
            return
        if "/" in name:
            project = name.split("/", 1)[0]
            names = self.members.get(project)
            if names is not None:
                names.discard(name)
                if not names:
                    del self.members[project]
        self._fragments.pop(name, None)
        self._joined = None

    def clear(self) -> None:
        self.counts.clear()
        self.members.clear()
        self.stale.clear()
        self._fragments.clear()
        self._joined = None

    def encoded(self) -> str:
        """The counts as the inside of a JSON object (no braces), cached until a count changes."""
        if self._joined is None:
            self._joined = ",".join(self._fragments.values())
        return self._joined


def encode_key(name: str) -> str:
    """``name`` as a JSON string, as :func:`compact_json` writes it (plain names skip the encoder)."""
    if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name:
        return f'"{name}"'
    return compact_json(name)

"""When is a pane safe to type into? Per-assistant screen patterns (plugin data).

``idle`` must match the assistant's empty composer; ``unsafe`` must not match
anything on screen: permission or confirmation dialogs, numbered menus, busy
spinners. Both can be overridden per project in ``[adapters.tmux_bridge]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNSAFE_COMMON = (
    r"esc to interrupt|\bWorking\b|\bThinking\b|thinking…|Generating|"
    r"\ballow\b|\bapprove\b|\bpermission\b|\bconfirm\b|\btrust\b|\bdeny\b|\[y/n\]|\(y/n\)|"
    r"^\s*[›>❯]?\s*[1-9][.)]\s+\S"
)

PATTERNS: dict[str, tuple[str, str]] = {
    "claude": (r"^\s*[>❯]\s*$|\? for shortcuts", UNSAFE_COMMON + r"|Do you want to"),
    "codex": (r"^\s*›\s*$|^\s*›\s+\S.*$", UNSAFE_COMMON + r"|Update available|update-required"),
    "gemini": (r"Type your message|Ask Gemini", UNSAFE_COMMON + r"|Waiting for user confirmation"),
    "generic": (r"^\s*[>›❯$]\s*$", UNSAFE_COMMON),
}


@dataclass(frozen=True, slots=True)
class PaneRules:
    """Compiled idle and unsafe patterns for one assistant."""

    idle: re.Pattern[str]
    unsafe: re.Pattern[str]

    @classmethod
    def for_agent(cls, agent: str, idle: str | None = None, unsafe: str | None = None) -> PaneRules:
        base_idle, base_unsafe = PATTERNS.get(agent, PATTERNS["generic"])
        flags = re.MULTILINE | re.IGNORECASE
        return cls(re.compile(idle or base_idle, re.MULTILINE), re.compile(unsafe or base_unsafe, flags))

    def safe_to_type(self, screen: str) -> bool:
        """The composer is on screen and nothing that looks like a dialog, menu or spinner is."""
        tail = "\n".join(screen.rstrip("\n").splitlines()[-25:])
        return bool(self.idle.search(tail)) and not self.unsafe.search(tail)

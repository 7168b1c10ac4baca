"""When is a pane safe to type into? Per-assistant screen patterns (plugin data).

``idle`` must match the assistant's empty composer; ``unsafe`` must not match
anything in the window: permission or confirmation dialogs, numbered menus,
busy spinners. ``ignore`` removes known harmless banners first (Gemini's
start-up tips are a numbered list, its project-hooks warning says "trust"),
so they do not block a wake forever. All three can be overridden per project
in ``[adapters.tmux_bridge]``.

Every check reads the same window (:meth:`PaneRules.window`): the bottom
``WINDOW_LINES`` lines of the screen once banners are removed. A check
before typing that read less than the check after it would type, find the
banner it did not look at, clear, and type again forever.

The patterns were written against the real screens of Claude Code 2.1.197,
Codex 0.171.0 and Gemini CLI 0.61.0 in a tmux pane.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WINDOW_LINES = 25

UNSAFE_COMMON = (
    r"esc to interrupt|\bWorking\b|\bThinking\b|thinking…|Generating|"
    r"\ballow\b|\bapprove\b|\bpermission\b|\bconfirm\b|\btrust\b|\bdeny\b|\[y/n\]|\(y/n\)|"
    r"^\s*[›>❯●]?\s*[1-9][.)]\s+\S"
)

# Gemini CLI 0.61.0. Busy: "⠙ Thinking... (esc to cancel, 0s)" and, while a
# hook runs, "⠧ Executing Hook: <command> (esc to cancel, 1s)"; in both the
# composer's placeholder stays visible below, so idle alone proves nothing.
GEMINI_UNSAFE = UNSAFE_COMMON + r"|esc to cancel|Executing Hook|Waiting for user confirmation|Do you trust"
# Harmless banners of a fresh Gemini session (verbatim, 0.61.0): the start-up
# tips, the project-hooks warning ("... or do not trust this project,"),
# and everything the CLI printed before it relaunched itself after "Trust folder"
# (the answered trust dialog stays on screen above the new process's output).
GEMINI_IGNORE = "|".join(
    (
        # First (tried at the very start): everything above the last relaunch notice
        # is the output of the process that exited.
        r"\A(?:.*\n)*[ \t]*Gemini CLI is restarting to apply the trust changes\.\.\.[ \t]*$",
        r"^[ \t]*Tips for getting started:[ \t]*$",
        r"^[ \t]*[1-4]\. (?:Create GEMINI\.md files to customize your interactions|/help for more information"
        r"|Ask coding questions, edit code or run commands|Be specific for the best results)[ \t]*$",
        r"^[ \t]*⚠[ \t]+WARNING: The following project-level hooks have been detected in this workspace:[ \t]*\n"
        r"(?:[ \t]+- .*\n)*",
        r"^[ \t]*These hooks will be executed\. If you did not configure these hooks"
        r" or do not trust this project,[ \t]*$",
        r"^[ \t]*please review the project settings \(\.gemini/settings\.json\) and remove them\.[ \t]*$",
    )
)

# agent -> (idle, unsafe, ignore)
PATTERNS: dict[str, tuple[str, str, str]] = {
    "claude": (r"^\s*[>❯]\s*$|\? for shortcuts", UNSAFE_COMMON + r"|Do you want to", ""),
    "codex": (r"^\s*›\s*$|^\s*›\s+\S.*$", UNSAFE_COMMON + r"|Update available|update-required", ""),
    "gemini": (r"Type your message|Ask Gemini", GEMINI_UNSAFE, GEMINI_IGNORE),
    "generic": (r"^\s*[>›❯$]\s*$", UNSAFE_COMMON, ""),
}


@dataclass(frozen=True, slots=True)
class PaneRules:
    """Compiled idle, unsafe and ignore patterns for one assistant."""

    idle: re.Pattern[str]
    unsafe: re.Pattern[str]
    ignore: re.Pattern[str] | None = None
    lines: int = WINDOW_LINES

    @classmethod
    def for_agent(
        cls, agent: str, idle: str | None = None, unsafe: str | None = None, ignore: str | None = None
    ) -> PaneRules:
        base_idle, base_unsafe, base_ignore = PATTERNS.get(agent, PATTERNS["generic"])
        flags = re.MULTILINE | re.IGNORECASE
        skip = base_ignore if ignore is None else ignore
        return cls(
            re.compile(idle or base_idle, re.MULTILINE),
            re.compile(unsafe or base_unsafe, flags),
            re.compile(skip, re.MULTILINE) if skip else None,
        )

    def window(self, screen: str) -> str:
        """What every check reads: the bottom lines of ``screen`` once harmless banners are removed."""
        if self.ignore is not None:
            screen = self.ignore.sub("", screen)
        return "\n".join(screen.rstrip().splitlines()[-self.lines :])

    def safe_to_type(self, screen: str) -> bool:
        """The composer is in the window and nothing that looks like a dialog, menu or spinner is."""
        tail = self.window(screen)
        return bool(self.idle.search(tail)) and not self.unsafe.search(tail)

    def typed_safely(self, screen: str, text: str) -> bool:
        """After typing ``text``: it shows in the window and nothing unsafe appeared (same window as before)."""
        tail = self.window(screen)
        shown = _squash(text[:40]) in _squash(tail)
        return shown and not self.unsafe.search(tail.replace(text, ""))


def _squash(text: str) -> str:
    """Without whitespace, so a prompt the TUI wrapped over two lines still matches."""
    return re.sub(r"\s+", "", text)

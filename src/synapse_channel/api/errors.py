"""Typed failures of :mod:`synapse_channel.api`: catch what you can act on.

Every exception carries ``exit_code``, the code the ``synapse`` CLI returns
for it (see docs/cli.md), so a command built on the API exits the same way.
"""

from __future__ import annotations

from typing import Any

EXIT_REFUSED = 1
EXIT_UNKNOWN = 3
EXIT_YIELD = 4


class SynapseError(Exception):
    """Base of every API failure."""

    exit_code = EXIT_REFUSED
    #: False when trying again unchanged cannot help (a refusal, a bad credential).
    retryable = True


class Unreachable(SynapseError):
    """Nothing answered at the URI, or the handshake failed."""


class InsecureTransport(SynapseError):
    """A secret would cross the network in clear text; refused before any socket was opened."""

    retryable = False


class Closed(SynapseError):
    """The hub closed the connection; ``code`` and ``reason`` say why."""

    def __init__(self, message: str, code: int | None = None, reason: str = "", exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.exit_code = exit_code


class Superseded(Closed):
    """Another connection took this name over (takeover, cooldown or a name owned elsewhere): yield."""

    exit_code = EXIT_YIELD
    retryable = False


class Timeout(SynapseError):
    """No verdict in time: the request may or may not have taken effect."""

    exit_code = EXIT_UNKNOWN


class Refused(SynapseError):
    """The hub refused the request; ``code`` is its reason code (``BAD_FIELD``, ``QUOTA_EXCEEDED``, ...)."""

    retryable = False

    def __init__(self, message: str, code: str = "", frame: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        #: The hub's frame that refused (a copy), for details the message leaves out.
        self.frame = dict(frame or {})


class Forbidden(Refused):
    """This identity may not make that request (another identity's mailbox, a seat's limits)."""


class Conflict(Refused):
    """The request lost to someone else's state: an overlapping claim, a stale epoch or board version.

    For a claim refused over someone else's live claim, ``held_by``,
    ``held_task`` and ``held_until`` (epoch seconds) say who is in the way
    and until when (None from a hub that does not send them).
    """

    @property
    def held_by(self) -> str | None:
        """The owner of the claim in the way."""
        value = self.frame.get("held_by")
        return value if isinstance(value, str) else None

    @property
    def held_task(self) -> str | None:
        """The task id of the claim in the way."""
        value = self.frame.get("held_task")
        return value if isinstance(value, str) else None

    @property
    def held_until(self) -> float | None:
        """When that claim's lease ends unless renewed (epoch seconds)."""
        value = self.frame.get("held_until")
        return float(value) if isinstance(value, int | float) else None

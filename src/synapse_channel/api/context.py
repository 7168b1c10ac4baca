"""Who this process is and which hub it talks to, resolved the way the ``synapse`` CLI does.

A plugin or script that needs the configured identity, the hub URI, the
token or its own config table reads it here rather than re-implementing the
lookup order (``SYN_IDENTITY`` > project config; ``SYNAPSE_URI`` > ``[hub]
uri``; ``--token`` > ``--token-file`` > ``SYNAPSE_TOKEN`` > ...). No click
here: see :mod:`synapse_channel.api.cli` for the command-line flavour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import Refused

DEFAULT_URI = "ws://localhost:8876"


def settings() -> Any:
    """The effective :class:`synapse_channel.config.Config` of this process (loaded once).

    Read a plugin's own keys with ``settings().deferred.get("table.key")`` (a
    found value has ``.value``) or core keys with ``settings().get("hub.uri")``.
    """
    from ..client import context

    return context.settings()


def setting(key: str) -> Any:
    """The value of a plugin-declared key (``register_settings``) from the config files, else None."""
    found = settings().deferred.get(key)
    return found.value if found else None


def default_identity() -> str | None:
    """``SYN_IDENTITY``, else the project config's ``[identity]``; None when neither is set."""
    from ..client import context

    return context.default_identity()


def default_uri() -> str:
    """``SYNAPSE_URI``, else ``[hub] uri``, else ``ws://localhost:8876`` (possibly a comma-separated list)."""
    from ..client import context

    return context.default_uri()


def resolve_token(token: str | None = None, token_file: Path | None = None) -> str | None:
    """The token to present: ``token`` > ``token_file`` > ``SYNAPSE_TOKEN`` > ``SYNAPSE_TOKEN_FILE`` > config.

    A token file that others can read, or that is empty or missing, raises
    :class:`~synapse_channel.api.Refused` (code ``TOKEN_FILE``): a shared
    secret left world-readable is not a secret.
    """
    from ..client import context

    try:
        return context.resolve_token(token, token_file)
    except context.TokenFileError as exc:
        raise Refused(str(exc), "TOKEN_FILE") from None


def owner_of(name: str) -> str:
    """The identity a connection name receives for: ``proj/a-rx`` and ``proj/a-pane-rx`` are ``proj/a``.

    A roster lists connections (waiters included); this folds them back to agents.
    """
    from ..protocol import owner_of as owner

    return owner(name)


def one_shot(tag: str, identity: str | None = None) -> str:
    """A one-shot connection name for ``identity`` (default: this process's): ``IDENTITY~tag-PID``.

    On a seated hub a seat may register only its own names; the ``~`` tail
    keeps a helper connection inside the seat without colliding with the agent.
    """
    import os

    from ..protocol import one_shot_name

    return one_shot_name(tag, identity if identity is not None else default_identity(), os.getpid())

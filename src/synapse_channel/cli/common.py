"""Options and helpers shared by the client commands.

Flags match the 0.99.x synapse CLI (``--uri``, ``--name``, ``--token``,
``--token-file``) so users' scripts keep working. The click helpers live in
the public :mod:`synapse_channel.api.cli` (plugin commands use them too) and
identity/token resolution in :mod:`synapse_channel.client.context`; the
names stay importable from here for the built-in commands.
"""

from __future__ import annotations

# The public click helpers: one definition for built-in and plugin commands.
from ..api.cli import CONNECTION_OPTIONS as CONNECTION_OPTIONS
from ..api.cli import DEFAULT_URI as DEFAULT_URI
from ..api.cli import NAME_ALIASES as NAME_ALIASES
from ..api.cli import F as F
from ..api.cli import checked_uri as checked_uri
from ..api.cli import connection_options as connection_options
from ..api.cli import finite as finite
from ..api.cli import name_option as name_option
from ..api.cli import read_token_file as read_token_file
from ..api.cli import refuse_insecure as refuse_insecure
from ..api.cli import resolve_token as resolve_token
from ..api.cli import run as run
from ..api.cli import say as say

# Resolution lives in client.context (the API and plugins share it); these names stay for the commands.
from ..client.context import TokenOrigin as TokenOrigin
from ..client.context import runtime as runtime
from ..client.context import settings as settings
from ..client.context import token_file_problem as token_file_problem
from ..client.context import token_origin as token_origin


def default_identity() -> str | None:
    """``SYN_IDENTITY``, else the project config's identity (``[identity]``)."""
    from ..api.context import default_identity as resolved

    return resolved()


def one_shot(tag: str) -> str:
    """This command's connection name: ``IDENTITY~tag-PID`` when an identity is configured."""
    from ..api.context import one_shot as named

    return named(tag)

"""Joining a reply the hub split into pages by bytes (``has_more``).

:meth:`Session.pages <synapse_channel.api.Session.pages>` returns every page
of a ``state_snapshot`` or ``board_snapshot``; :func:`merge_pages` folds them
into the one body an older, unpaged hub would have sent, so a caller prints
or serialises a single snapshot whichever hub answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def merge_pages(pages: Sequence[Mapping[str, Any]], holder: str, *keys: str) -> dict[str, Any]:
    """The ``holder`` body of the first page with the ``keys`` lists of every page joined in order.

    ``merge_pages(pages, "board", "tasks", "ready")`` for a board,
    ``merge_pages(pages, "snapshot", "active_claims")`` for the claims.
    """
    from ..client.connection import merge_pages as merge

    return merge([dict(p) for p in pages], holder, *keys)

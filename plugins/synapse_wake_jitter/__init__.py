"""Bundled plugin: the default ``wake_delay`` policy.

One-to-many wakes (broadcasts, globs, comma lists, project-wide messages) are
spread uniformly over ``jitter`` seconds so a fleet does not re-invoke every
agent at the same instant (providers rate-limit such bursts). Directed wakes
are immediate.
"""

from __future__ import annotations

import random
from typing import Any

from synapse_channel.hookspecs import hookimpl

_rng = random.Random()


@hookimpl(trylast=True)
def wake_delay(identity: str, frame: dict[str, Any], one_to_many: bool, jitter: float) -> float:
    """``uniform(0, jitter)`` for one-to-many wakes, 0 for directed ones."""
    if not one_to_many or jitter <= 0:
        return 0.0
    return _rng.uniform(0.0, jitter)

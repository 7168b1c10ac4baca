"""Bundled plugin: the default ``wake_delay`` policy (``[wake] policy``).

One-to-many wakes (broadcasts, globs, comma lists, project-wide messages) are
spread over ``jitter`` seconds so a fleet does not re-invoke every agent at
the same instant (providers rate-limit such bursts). Directed wakes are
always immediate. Policies:

* ``uniform`` (default): a fresh ``uniform(0, jitter)`` delay per wake;
* ``offset``: a fixed per-identity delay in ``[0, jitter)``, derived from the
  identity, so the same agents always wake in the same order;
* ``none``: no delay.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any

from synapse_channel.hookspecs import hookimpl

POLICIES = ("uniform", "offset", "none")
_rng = random.Random()
_policy = ["uniform"]


@hookimpl
def configure(config: Any) -> None:
    """Pick up ``[wake] policy`` from the project's config."""
    policy = str(config.get("wake.policy") or "uniform")
    _policy[0] = policy if policy in POLICIES else "uniform"


def offset(identity: str, jitter: float) -> float:
    """The identity's fixed place in ``[0, jitter)``."""
    digest = hashlib.sha256(identity.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * jitter


@hookimpl(trylast=True)
def wake_delay(identity: str, frame: Mapping[str, Any], one_to_many: bool, jitter: float) -> float:
    """Immediate for directed wakes; the configured policy for one-to-many ones."""
    if not one_to_many or jitter <= 0 or _policy[0] == "none":
        return 0.0
    if _policy[0] == "offset":
        return offset(identity, jitter)
    return _rng.uniform(0.0, jitter)

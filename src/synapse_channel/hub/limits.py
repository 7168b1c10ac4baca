"""Process limits the hub raises at start so a fleet can connect."""

from __future__ import annotations

import logging

log = logging.getLogger("synapse_channel.hub")


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the (old, new) soft limits.

    Every agent holds a socket, and distributions default the soft limit to
    1024: the 1,000th agent would fail with "too many open files" although the
    hard limit (often 524288) allows far more. Returns None where the platform
    has no such limit or refuses the change (the hub runs on with what it has).
    """
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and soft >= target):
        log.debug("open files limit: soft %s already at hard %s", soft, hard)
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.debug("open files limit: could not raise soft %s to %s: %s", soft, target, exc)
        return None
    log.debug("open files limit: soft %s raised to %s (hard %s)", soft, target, hard)
    return soft, target

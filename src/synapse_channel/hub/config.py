"""Hub settings: one dataclass the CLI fills from flags and the tests build directly."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
REMOTE_PER_HOST = 64


@dataclass(slots=True)
class HubConfig:
    """Everything a hub needs to start. Defaults match ``synapse hub`` with no flags."""

    host: str = "127.0.0.1"
    port: int = 8876
    token: str | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    hub_id: str | None = None
    db: Path | None = None  # None: in memory only
    relay_log: Path | None = None
    relay_max_lines: int = 5000
    max_msg_kb: int = 1024
    max_clients: int = 256
    max_per_host: int = 0  # 0: no cap for loopback peers, REMOTE_PER_HOST for others
    ping_interval: float | None = 15.0
    ping_timeout: float | None = 15.0
    auth_timeout: float = 10.0
    close_timeout: float = 1.0
    takeover_cooldown: float = 2.0
    private_directed: bool = False
    send_queue_limit: int = 4096
    insecure_off_loopback: bool = False
    snapshot_every: int = 10_000
    group_commit: bool = True  # False: one fsync per outcome (benchmarks compare the two)

    @property
    def tls(self) -> bool:
        """True when the hub serves ``wss://``."""
        return self.tls_certfile is not None


def is_loopback(host: str) -> bool:
    """True for hosts only this machine can reach."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InsecureBindError(RuntimeError):
    """Binding off loopback without a token would expose the hub to the network."""


def check_exposure(config: HubConfig) -> str | None:
    """Refuse an open off-loopback bind; return a warning when it was forced."""
    if is_loopback(config.host) or config.token:
        return None
    message = (
        f"refusing to bind {config.host}:{config.port} without a token: anyone who can reach it "
        "could read and send every message. Pass --token-file (or SYNAPSE_TOKEN), bind "
        "127.0.0.1, or accept the risk with --insecure-off-loopback."
    )
    if not config.insecure_off_loopback:
        raise InsecureBindError(message)
    return f"WARNING: open hub bound off loopback at {config.host}:{config.port} (--insecure-off-loopback)"

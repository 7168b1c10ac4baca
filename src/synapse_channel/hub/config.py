"""Hub settings: one dataclass the CLI fills from flags and the tests build directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..compaction import DEFAULT_RETAIN_DAYS
from ..core import mailbox
from ..core.mailbox import MailboxLimits
from ..trust import is_loopback_host

REMOTE_PER_HOST = 64
#: Default byte budget of one outgoing frame (1 MiB): under every client's receive limit.
DEFAULT_MAX_FRAME_BYTES = 1 << 20
#: Default per-socket bound on unsent bytes: a burst of a dozen full frames, not an unbounded backlog.
DEFAULT_MAX_QUEUE_BYTES = 16 << 20
#: Smallest frame budget accepted: the envelope, names and page fields must always fit.
MIN_FRAME_BYTES = 16 * 1024


def check_limits(config: HubConfig) -> None:
    """Refuse byte limits that could leave a reply undeliverable.

    A socket's queue must hold at least two full frames, or a single page
    could get a healthy client closed as slow.
    """
    if config.max_frame_bytes < MIN_FRAME_BYTES:
        raise ValueError(f"max_frame_bytes must be at least {MIN_FRAME_BYTES}")
    if config.max_queue_bytes < 2 * config.max_frame_bytes:
        raise ValueError("max_queue_bytes must be at least twice max_frame_bytes")


@dataclass(slots=True)
class HubConfig:
    """Everything a hub needs to start. Defaults match ``synapse hub`` with no flags."""

    host: str = "127.0.0.1"
    port: int = 8876
    token: str | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    hub_id: str | None = None
    db: Path | None = None  # None: in memory only (unless database_url is set)
    #: A ``postgresql://`` URL: the journal lives there and several hubs elect one leader (wins over ``db``).
    database_url: str | None = None
    #: The URI a standby hands clients as this hub's address when it leads (default: the bound address).
    advertise: str | None = None
    #: Seconds a paused or cut-off PostgreSQL leader keeps leadership before a standby may take over.
    lease: float = 5.0
    relay_log: Path | None = None
    relay_max_lines: int = 5000
    #: Byte bound of the relay feed (trimmed to it once it holds twice as much).
    relay_max_bytes: int = 8 << 20
    max_msg_kb: int = 1024
    max_clients: int = 256
    max_per_host: int = 0  # 0: no cap for loopback peers, REMOTE_PER_HOST for others
    ping_interval: float | None = 15.0
    ping_timeout: float | None = 15.0
    auth_timeout: float = 5.0  # seconds a new socket has to send its first frame (every hub)
    close_timeout: float = 1.0
    takeover_cooldown: float = 2.0
    #: Live claims one agent may hold (QUOTA_EXCEEDED beyond); 0 = unlimited.
    max_claims_per_agent: int = 256
    #: Seconds a departed name may come back (a ``wait`` re-arm) before others hear ``left``; 0: at once.
    presence_grace: float = 1.0
    #: Presence changes are broadcast in one batch at most once per this many seconds; 0: every loop tick.
    presence_window: float = 0.1
    #: Copy every directed chat to every socket, as 0.99 hubs did (off: only addressees get it).
    compat_fanout: bool = False
    #: Roles connections may declare (``roles`` in the registration frame); others are refused.
    allowed_roles: frozenset[str] = frozenset()
    #: Senders whose chats the hub marks ``priority`` (wakes ``--directed-only`` waiters).
    priority_senders: frozenset[str] = frozenset({"CEO"})
    #: Retained-mailbox bounds: a directed chat that would pass one is refused with ``MAILBOX_FULL``.
    mailbox_max_bytes: int = mailbox.MAX_TOTAL_BYTES
    mailbox_max_messages: int = mailbox.DEFAULT_RETENTION
    mailbox_max_recipient_bytes: int = mailbox.MAX_RECIPIENT_BYTES
    mailbox_max_recipient_messages: int = mailbox.MAX_RECIPIENT_MESSAGES
    #: Largest frame the hub sends (bytes); list replies are split into pages below it.
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    #: Bytes that may wait unsent for one socket before it is closed as a slow consumer (4017).
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    insecure_off_loopback: bool = False
    snapshot_every: int = 10_000
    #: Compact the journal after each snapshot (see docs/persistence.md); off: the journal keeps everything.
    compaction: bool = True
    #: Days chats, audit refusals and progress notes stay in the journal once a snapshot covers them.
    retain_days: float = DEFAULT_RETAIN_DAYS
    group_commit: bool = True  # False: one fsync per outcome (benchmarks compare the two)

    @property
    def mailbox_limits(self) -> MailboxLimits:
        """The mailbox bounds as the core takes them."""
        return MailboxLimits(
            total_bytes=self.mailbox_max_bytes,
            total_messages=self.mailbox_max_messages,
            recipient_bytes=self.mailbox_max_recipient_bytes,
            recipient_messages=self.mailbox_max_recipient_messages,
        )

    @property
    def tls(self) -> bool:
        """True when the hub serves ``wss://``."""
        return self.tls_certfile is not None


class InsecureBindError(RuntimeError):
    """A configuration that would expose the hub: an open off-loopback bind or a guessable token."""


#: Shortest shared token the hub accepts (seat secrets are always longer).
MIN_TOKEN_LEN = 16


def check_exposure(config: HubConfig, *, seated: bool = False) -> str | None:
    """Refuse a weak token and an open off-loopback bind; return a warning when one applies.

    Lives here, not in the CLI, so an embedded :class:`~synapse_channel.hub.server.Hub`
    is held to the same rule.
    """
    if config.token is not None and len(config.token.strip()) < MIN_TOKEN_LEN:
        raise InsecureBindError(
            f"refusing a hub token shorter than {MIN_TOKEN_LEN} characters (or blank): it can be guessed. "
            "Generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if config.token is not None and config.token.startswith("synseat_"):
        raise InsecureBindError(
            "the hub token is a seat secret (synseat_...): a shared --token admits anyone who holds it. "
            "Unset SYNAPSE_TOKEN for the hub, or give it a separate --token-file"
        )
    if is_loopback_host(config.host):
        return None
    if config.token or seated:
        if config.tls:
            return None
        return (
            f"WARNING: hub bound off loopback at {config.host}:{config.port} without TLS: secrets and messages "
            "cross the network in clear text (clients refuse to send a secret over plain ws:// to a remote host). "
            "Serve wss:// with --tls-certfile/--tls-keyfile or put a TLS proxy in front."
        )
    message = (
        f"refusing to bind {config.host}:{config.port} without seats or a token: anyone who can reach it "
        "could read and send every message. Add seats (synapse seat add), pass --token-file (or SYNAPSE_TOKEN), "
        "bind 127.0.0.1, or accept the risk with --insecure-off-loopback."
    )
    if not config.insecure_off_loopback:
        raise InsecureBindError(message)
    return f"WARNING: open hub bound off loopback at {config.host}:{config.port} (--insecure-off-loopback)"

"""Which OS user is on the other end of a loopback TCP connection (Linux).

On a hub without seats, an online identity belongs to the local user whose
connection holds it, so another user on a shared host cannot take it over.
TCP has no SO_PEERCRED, but for a loopback peer the kernel lists the peer's
own socket, with its owner's uid, in ``/proc/net/tcp`` (``tcp6``): the row
whose local address is the peer's and whose remote address is ours.

Reading those files costs O(sockets on the host), so the hub reads them once
per registration, and only when it could take over or join an online identity.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from ..trust import is_loopback_host

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def _hex_addr(host: str, port: int) -> tuple[str, str] | None:
    """``host:port`` as the kernel prints it: (tcp form, or "" for IPv6-only; tcp6 form)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    v4 = ip if isinstance(ip, ipaddress.IPv4Address) else ip.ipv4_mapped
    six = ip if isinstance(ip, ipaddress.IPv6Address) else ipaddress.IPv6Address(f"::ffff:{ip}")
    order = sys.byteorder
    raw6 = six.packed
    tcp6 = "".join(f"{int.from_bytes(raw6[i : i + 4], order):08X}" for i in range(0, 16, 4)) + f":{port:04X}"
    tcp = f"{int.from_bytes(v4.packed, order):08X}:{port:04X}" if v4 is not None else ""
    return tcp, tcp6


@dataclass(frozen=True, slots=True)
class SocketTable:
    """The kernel's TCP socket tables as ``(local, remote) -> uid``, read once."""

    owners: dict[tuple[str, str], int]

    @classmethod
    def read(cls) -> SocketTable:
        """Read ``/proc/net/tcp`` and ``tcp6`` (an empty table where they do not exist)."""
        owners: dict[tuple[str, str], int] = {}
        for table in _TABLES:
            try:
                text = table.read_text()
            except OSError:
                continue
            for line in text.splitlines()[1:]:
                fields = line.split()
                if len(fields) > 7:
                    owners[(fields[1], fields[2])] = int(fields[7])
        return cls(owners)

    def peer_uid(self, peer: tuple[str, int], local: tuple[str, int]) -> int | None:
        """The uid owning the socket at ``peer`` connected to ``local``, or None if unknown.

        Only loopback peers are looked up: a remote host's users are not ours.
        """
        if not is_loopback_host(peer[0].split("%", 1)[0]):
            return None
        p, ours = _hex_addr(*peer), _hex_addr(*local)
        if p is None or ours is None:
            return None
        for key in ((p[0], ours[0]), (p[1], ours[1])):
            if key[0] and key[1] and key in self.owners:
                return self.owners[key]
        return None

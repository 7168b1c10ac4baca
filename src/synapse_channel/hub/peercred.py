"""Which OS user is on the other end of a loopback TCP connection (Linux).

On a hub without seats, an online identity belongs to the local user whose
connection holds it, so another user on a shared host cannot take it over.
TCP has no SO_PEERCRED, but for a loopback peer the kernel lists the peer's
own socket, with its owner's uid, in ``/proc/net/tcp`` (``tcp6``): the row
whose local address is the peer's and whose remote address is ours.

Reading those files costs O(sockets on the host), so the hub asks only when a
registration could take over or join an online identity.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def _hex_addr(host: str, port: int) -> tuple[str, str] | None:
    """``host:port`` as the kernel prints it: (tcp form or None, tcp6 form)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        v4: ipaddress.IPv4Address | None = ip.ipv4_mapped
    else:
        v4 = ip if isinstance(ip, ipaddress.IPv4Address) else None
    six = ip if isinstance(ip, ipaddress.IPv6Address) else ipaddress.IPv6Address(f"::ffff:{ip}")
    order = sys.byteorder
    raw6 = six.packed
    tcp6 = "".join(f"{int.from_bytes(raw6[i : i + 4], order):08X}" for i in range(0, 16, 4)) + f":{port:04X}"
    tcp = f"{int.from_bytes(v4.packed, order):08X}:{port:04X}" if v4 is not None else ""
    return tcp, tcp6


def peer_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The uid owning the socket at ``peer`` connected to ``local``, or None if unknown.

    Only loopback peers are looked up: a remote host's users are not ours.
    """
    try:
        ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
        return None
    p, ours = _hex_addr(*peer), _hex_addr(*local)
    if p is None or ours is None:
        return None
    for table, (want_local, want_remote) in zip(_TABLES, ((p[0], ours[0]), (p[1], ours[1])), strict=True):
        if not want_local or not want_remote:
            continue
        try:
            text = table.read_text()
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 7 and fields[1] == want_local and fields[2] == want_remote:
                return int(fields[7])
    return None

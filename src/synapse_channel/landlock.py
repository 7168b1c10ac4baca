"""Linux Landlock through ctypes: confine this process's writes to a set of paths, then exec.

Landlock (kernel >= 5.13) lets an unprivileged process drop rights for
itself and every process it starts; nothing can lift the rule afterwards.
Only write-type rights are restricted (writing, truncating, creating,
removing, renaming and linking files and directories); reading and executing
stay free. The syscall numbers (444-446) are the same on every architecture.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterable

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

WRITE_FILE = 1 << 1
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link and rename across directories
TRUNCATE = 1 << 14  # ABI 3
#: Rights that make sense on a regular file (the directory ones are refused there with EINVAL).
FILE_RIGHTS = WRITE_FILE | TRUNCATE

#: A test-only switch that makes Landlock look absent, to exercise the refusal path.
FAKE_ABSENT_ENV = "SYNAPSE_TEST_NO_LANDLOCK"


class Unavailable(OSError):
    """Landlock cannot be used here (old kernel, disabled at boot, not Linux)."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version; :class:`Unavailable` (with why) when there is none."""
    if os.environ.get(FAKE_ABSENT_ENV) == "1":
        raise Unavailable("Landlock reported absent (SYNAPSE_TEST_NO_LANDLOCK=1)")
    if not os.uname().sysname == "Linux":
        raise Unavailable("Landlock is a Linux feature")
    libc = _libc()
    version = libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    if version < 0:
        err = ctypes.get_errno()
        why = {
            38: "the kernel has no Landlock (needs Linux 5.13 or later)",
            95: "Landlock is built in but not enabled (add landlock to the lsm= boot parameter)",
        }.get(err, os.strerror(err))
        raise Unavailable(why)
    return int(version)


def handled_rights(abi: int) -> int:
    """The write-type rights this ABI knows, all of which the rule set restricts."""
    rights = WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK
    rights |= MAKE_FIFO | MAKE_BLOCK | MAKE_SYM
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights


def restrict_writes(allowed: Iterable[str]) -> int:
    """Allow writes only beneath ``allowed`` (directories: everything below; files: that file), for good.

    Applies to this process and everything it later starts. Paths that do
    not exist are skipped by the caller. Returns the ABI version used.
    """
    abi = abi_version()
    handled = handled_rights(abi)
    libc = _libc()
    attr = struct.pack("=Q", handled)  # struct landlock_ruleset_attr, handled_access_fs only (ABI 1 size)
    ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        raise Unavailable(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for path in allowed:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rights = handled if os.path.isdir(path) else handled & FILE_RIGHTS
                rule = struct.pack("=Qi", rights, fd)  # struct landlock_path_beneath_attr (packed)
                if libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.c_char_p(rule), ctypes.c_uint32(0)):
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(fd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)):
            raise OSError(ctypes.get_errno(), f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi

"""Who this process is and which hub it talks to: config, identity, token.

Shared by the CLI, the public API (:mod:`synapse_channel.api`) and the
bundled plugins, so all of them resolve a name and a token the same way. No
click here: a bad token file is a :class:`TokenFileError` (a ``ValueError``);
the CLI turns it into a one-line usage error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a commit ~3 ms
if TYPE_CHECKING:
    from typing import Any, Final

DEFAULT_URI = "ws://localhost:8876"


class TokenFileError(ValueError):
    """A token file that cannot serve: missing, unreadable, empty or readable by others."""


_SETTINGS: list[Any] = []


def settings() -> Any:
    """The effective config for clients (cached; plugin tables left to plugins).

    A :class:`~synapse_channel.config.ConfigError` propagates: it names the file and line.
    """
    if not _SETTINGS:
        from ..config import load_config

        config = load_config(strict=False)
        if config.source("paths.home") != "default" and not os.environ.get("SYN_HOME"):
            os.environ["SYN_HOME"] = str(config.home)  # one place decides; paths.syn_home() reads it
        _SETTINGS.append(config)
    return _SETTINGS[0]


_RUNTIME: list[Any] = []


def runtime() -> tuple[Any, Any]:
    """Config and plugin manager, loaded once per process (strictly validated)."""
    if not _RUNTIME:
        from ..plugins import load_runtime

        _RUNTIME.append(load_runtime())
    config, pm = _RUNTIME[0]
    return config, pm


def default_uri() -> str:
    """``SYNAPSE_URI``, else ``[hub] uri``, else :data:`DEFAULT_URI`; may be a list (see :mod:`.addresses`)."""
    return os.environ.get("SYNAPSE_URI") or str(settings().get("hub.uri") or DEFAULT_URI)


def default_identity() -> str | None:
    """``SYN_IDENTITY``, else the project config's identity (``[identity]``)."""
    return os.environ.get("SYN_IDENTITY") or settings().identity


def one_shot(tag: str) -> str:
    """A one-shot connection name: ``IDENTITY~tag-PID`` when an identity is configured.

    On a seated hub a seat may register only its own names, and the ``~`` tail
    keeps one-shot connections inside the seat without colliding with the agent.
    """
    from ..protocol import one_shot_name

    return one_shot_name(tag, default_identity(), os.getpid())


def _inspect_token_file(path: Path) -> tuple[str, tuple[str, str] | None]:
    """The file's token and ``(kind, message)`` when it cannot serve as a token file.

    ``kind`` is ``"exposed"`` (group/other may access it: the protection is
    broken), ``"unreadable"`` or ``"empty"``. One stat and one read.
    """
    try:
        st = path.stat()
        text = path.read_text().strip()
    except OSError as exc:
        return "", ("unreadable", f"cannot read token file {path}: {exc.strerror}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return "", ("exposed", f"token file {path} is readable by others; run: chmod 600 {path}")
    if not text:
        return "", ("empty", f"token file {path} is empty")
    return text, None


def token_file_problem(path: Path) -> tuple[str, str] | None:
    """``(kind, message)`` when ``path`` cannot serve as a token file, else None (never its content)."""
    return _inspect_token_file(path)[1]


def read_token_file(path: Path) -> str:
    """Read a token file; :class:`TokenFileError` for one that others can read, or that is empty."""
    text, problem = _inspect_token_file(path)
    if problem is not None:
        raise TokenFileError(problem[1])
    return text


class TokenOrigin:
    """Where the token comes from, decided without reading any file.

    ``source`` is ``flag:--token``, ``flag:--token-file``, ``env:SYNAPSE_TOKEN``,
    ``env:SYNAPSE_TOKEN_FILE``, the config file that set ``hub.token_file``, or
    ``none``. ``inline`` holds a token given directly (never printed). A plain
    class, not a dataclass: the git guard resolves a token on every commit.
    """

    __slots__ = ("file", "inline", "source")

    def __init__(self, source: str, file: Path | None = None, inline: str | None = None) -> None:
        self.source: Final = source
        self.file: Final = file
        self.inline: Final = inline

    def __eq__(self, other: object) -> bool:
        return type(other) is TokenOrigin and (self.source, self.file, self.inline) == (
            other.source,
            other.file,
            other.inline,
        )

    def __hash__(self) -> int:
        return hash((self.source, self.file, self.inline))

    def __repr__(self) -> str:  # never the inline token
        return f"TokenOrigin(source={self.source!r}, file={self.file!r})"


def token_origin(token: str | None, token_file: Path | None, config: Any = None) -> TokenOrigin:
    """``--token`` > ``--token-file`` > ``SYNAPSE_TOKEN`` > ``SYNAPSE_TOKEN_FILE`` > ``[hub] token_file``.

    ``[hub] token_file`` comes from the user file, or from a project file only
    when the user trusts that project (an untrusted one is ignored in config).
    """
    if token:
        return TokenOrigin("flag:--token", inline=token)
    if token_file is not None:
        return TokenOrigin("flag:--token-file", file=token_file)
    env = os.environ.get("SYNAPSE_TOKEN")
    if env:
        return TokenOrigin("env:SYNAPSE_TOKEN", inline=env)
    cfg = config if config is not None else settings()
    configured = cfg.get("hub.token_file")
    if configured:
        return TokenOrigin(cfg.source("hub.token_file"), file=Path(str(configured)).expanduser())
    return TokenOrigin("none")


def resolve_token(token: str | None, token_file: Path | None, config: Any = None) -> str | None:
    """The token to present (see :func:`token_origin` for the order), read from its file if need be."""
    origin = token_origin(token, token_file, config)
    if origin.inline:
        return origin.inline
    if origin.file is not None:
        return read_token_file(origin.file)
    return None

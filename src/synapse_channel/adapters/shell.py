"""``synapse hook ASSISTANT pre-shell``: run the assistant's shell commands under ``synapse run --enforce``.

Installed only with ``[guard] enforce_shell = true``. The assistant hands its
shell tool call to this hook before running it; the hook answers with the
same tool input whose ``command`` became::

    /abs/path/synapse run --enforce --no-claims-ok -- bash -c '<the original command>'

so the command, and everything it starts, can write only inside the agent's
live claims (Linux Landlock; see ``synapse run``). The command still runs in
the tool's working directory and environment, where ``synapse run`` finds the
identity the same way every hook does (``SYN_IDENTITY`` or the project
config).

Unlike the other hooks this one does not fail open: a command it cannot
confine (no Landlock, no identity, unreadable input) is refused with a
reason saying how to turn ``enforce_shell`` off, never run unconfined. Turning
the setting off takes effect at once, before the hook is uninstalled.
"""

from __future__ import annotations

import json
import shlex

from . import HookAdapter, synapse_command

#: What the hook puts before ``bash -c COMMAND``. Holding no claim, the command still runs, read-only in the
#: work tree (so ``ls`` and ``git log`` work before the first claim).
RUN_ARGS = ("run", "--enforce", "--no-claims-ok", "--")
PLAIN_ARGS = ("run", "--enforce", "--")
OFF_HINT = (
    "To let shell commands run unconfined, set `[guard] enforce_shell = false` in synapse.toml "
    "(or SYNAPSE_GUARD_ENFORCE_SHELL=false) and re-run `synapse adapters install`."
)


def wrap(command: str, synapse: str | None = None) -> str:
    """``command`` as one ``bash -c`` argument of ``synapse run --enforce`` (every word quoted)."""
    return shlex.join([synapse or synapse_command(), *RUN_ARGS, "bash", "-c", command])


def is_wrapped(command: str, synapse: str | None = None) -> bool:
    """True when ``command`` is exactly ``synapse run --enforce [--no-claims-ok] -- ...`` with this synapse.

    Exact: the words re-quoted must give back the command, so nothing (``;``,
    ``&&``, a second line) can ride along unconfined after a real prefix.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    me = synapse or synapse_command()
    if shlex.join(words) != command:
        return False
    for args in (RUN_ARGS, PLAIN_ARGS):  # ours, or a plain `run --enforce --` (never one with --allow)
        head = [me, *args]
        if len(words) > len(head) and words[: len(head)] == head:
            return True
    return False


def _enforce_on() -> bool:
    from ..client.context import settings

    return settings().get("guard.enforce_shell") is True


def _refusal() -> str | None:
    """Why no command can be confined here (Landlock, identity), or None."""
    from .. import landlock
    from ..client.context import default_identity

    try:
        landlock.abi_version()
    except landlock.Unavailable as exc:
        return f"synapse: shell commands here must run under `synapse run --enforce`, but {exc}. {OFF_HINT}"
    if not default_identity():
        return (
            "synapse: shell commands here must run under `synapse run --enforce`, which needs your identity "
            f"(set SYN_IDENTITY or [identity] in synapse.toml). {OFF_HINT}"
        )
    return None


def run_pre_shell(adapter: HookAdapter, stdin_text: str) -> str:
    """The hook's stdout: the rewritten tool input, a refusal, or the adapter's empty output; never raises.

    Empty output (the command runs as it is) for another tool, an empty
    command, a command already wrapped, or with ``enforce_shell`` now off.
    """
    try:
        payload = json.loads(stdin_text) if stdin_text.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("hook input is not a JSON object")
        tool_input = payload.get("tool_input")
        names = adapter.shell_matcher.split("|")
        if payload.get("tool_name") not in names or not isinstance(tool_input, dict):
            return adapter.empty_output
        command = tool_input.get("command")
        if not isinstance(command, str) or not command.strip() or not _enforce_on():
            return adapter.empty_output
        synapse = synapse_command()
        if is_wrapped(command, synapse):
            return adapter.empty_output
        reason = _refusal()
        if reason:
            return adapter.deny_edit_output(reason)
        return adapter.shell_input_output({**tool_input, "command": wrap(command, synapse)})
    except Exception as exc:  # refusing is safe; running unconfined silently is not
        reason = f"synapse: cannot confine this shell command ({type(exc).__name__}: {exc}). {OFF_HINT}"
        return adapter.deny_edit_output(reason)

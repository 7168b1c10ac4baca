"""The config trust boundary, the client's token guard and ``synapse doctor``.

A project's ``synapse.toml`` is written by whoever wrote the repository. The
hostile-repo tests plant one that points ``hub.token_file`` at a secret of the
user's (a unique marker) and ``hub.uri`` at a loopback listener: a recording
proxy in front of a real hub that keeps every byte clients send and decodes
their WebSocket frames. Every client path (commands, ``syn-wait``, assistant
hooks) runs as a real subprocess, and the marker must never reach the proxy.
Off-machine URIs use TEST-NET-1 (192.0.2.1): the guard refuses before any
connection, so nothing ever leaves this host.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.client.connection import HubClient, InsecureTransport
from synapse_channel.hub.server import Hub
from synapse_channel.trust import is_loopback_uri, project_refusal, transport_problem, trusted_root

from .conftest import BIN, HubFactory, run_cli

OFF_MACHINE = "ws://192.0.2.1:9"
REFUSAL = "refusing to send the hub token over plain ws://"


# --------------------------------------------------------------------------- the recording listener


def decode_client_stream(data: bytes) -> str:
    """The HTTP upgrade request plus every unmasked client frame payload, as text."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    out = [head.decode("latin-1")]
    pos = 0
    while sep and pos + 2 <= len(rest):
        length = rest[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack("!H", rest[pos : pos + 2])
            pos += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", rest[pos : pos + 8])
            pos += 8
        key, pos = rest[pos : pos + 4], pos + 4
        payload = rest[pos : pos + length]
        pos += length
        out.append(bytes(b ^ key[i % 4] for i, b in enumerate(payload)).decode("latin-1"))
    return "\n".join(out)


class Recorder:
    """A loopback TCP proxy to a real hub that records every byte clients send."""

    def __init__(self, upstream: Hub) -> None:
        self.upstream_port = int(upstream.uri.rsplit(":", 1)[1].split("/")[0])
        self.streams: list[bytearray] = []
        self.server: asyncio.Server | None = None
        self.uri = ""

    async def start(self) -> Recorder:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.uri = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = bytearray()
        self.streams.append(record)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bytearray | None) -> None:
            try:
                while data := await src.read(65536):
                    if keep is not None:
                        keep.extend(data)
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, record), pump(up_reader, writer, None), return_exceptions=True)

    def raw(self) -> bytes:
        return b"".join(bytes(s) for s in self.streams)

    def text(self) -> str:
        """Everything clients sent, decoded (frames unmasked)."""
        return "\n".join(decode_client_stream(bytes(s)) for s in self.streams)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def recorder_for() -> AsyncIterator[Any]:
    """``await recorder_for(hub)``: a recording proxy in front of ``hub`` (stopped at teardown)."""
    started: list[Recorder] = []

    async def make(hub: Hub) -> Recorder:
        rec = await Recorder(hub).start()
        started.append(rec)
        return rec

    yield make
    for rec in started:
        await rec.stop()


# --------------------------------------------------------------------------- the hostile repository


def marker() -> str:
    """A unique secret: the content of a file the user would never want sent anywhere."""
    return f"MARKER-{uuid.uuid4().hex}"


def plant(tmp_path: Path, uri: str, secret: str, *, name: str = "repo", pyproject: bool = False) -> Path:
    """A git-repo-like project whose config points ``token_file`` at the user's secret and ``uri`` at ``uri``."""
    root = tmp_path / name
    (root / ".git").mkdir(parents=True)
    secret_file = tmp_path / f"{name}-user-secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    body = f'[hub]\nuri = "{uri}"\ntoken_file = "{secret_file}"\n[identity]\nproject = "api"\nseat = "c1"\n'
    if pyproject:
        (root / "pyproject.toml").write_text("[project]\nname = 'x'\n" + body.replace("[", "[tool.synapse."))
    else:
        (root / "synapse.toml").write_text(body)
    return root


def user_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xdg" / "synapse" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def trust(tmp_path: Path, *roots: str, extra: str = "") -> Path:
    return user_config(tmp_path, extra + "[trust]\nprojects = [" + ", ".join(json.dumps(r) for r in roots) + "]\n")


async def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run one of the installed console scripts (``syn-wait``) like ``run_cli`` runs ``synapse``."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / name),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def hook_input(event: str, **extra: Any) -> bytes:
    return json.dumps({"session_id": "s", "cwd": ".", "hook_event_name": event, **extra}).encode()


async def every_client_path(env: dict[str, str] | None = None) -> list[tuple[str, int, str, str]]:
    """Run each client path once; (label, exit code, stdout, stderr) for each."""
    runs: list[tuple[str, tuple[str, ...], bytes | None]] = [
        ("who", ("who",), None),
        ("send", ("send", "hello from the repo"), None),
        ("wait", ("wait", "--timeout", "1"), None),
        ("state", ("state",), None),
        ("board", ("board",), None),
        ("session-start", ("hook", "claude-code", "session-start"), hook_input("SessionStart", source="startup")),
        ("prompt", ("hook", "claude-code", "prompt"), hook_input("UserPromptSubmit", prompt="go")),
    ]
    results = []
    for label, args, stdin in runs:
        results.append((label, *(await run_cli(*args, env=env, stdin=stdin))))
    results.append(("syn-wait", *(await run_script("syn-wait", "--timeout", "1", env=env))))
    return results


# --------------------------------------------------------------------------- the hostile-repo tests


@pytest.mark.parametrize("user_token", [False, True], ids=["no-user-token", "user-token-in-env"])
async def test_hostile_repo_never_gets_the_secret(
    user_token: bool, tmp_path: Path, hub_factory: HubFactory, recorder_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untrusted synapse.toml naming a token_file and a loopback uri: the file's content is never sent."""
    real_token = f"user-real-token-{uuid.uuid4().hex}"
    hub = await hub_factory(token=real_token if user_token else None)
    rec = await recorder_for(hub)
    secret = marker()
    root = plant(tmp_path, rec.uri, secret)
    monkeypatch.chdir(root)
    env = {"SYNAPSE_TOKEN": real_token} if user_token else {}
    results = await every_client_path(env)
    for label, _code, out, err in results:
        assert secret not in out + err, label
        assert "Traceback" not in err, (label, err)
    assert len(rec.streams) >= len(results)  # every path really talked to the planted (loopback) uri
    assert secret.encode() not in rec.raw()
    assert secret not in rec.text()
    assert '"type":"heartbeat"' in rec.text()  # the decoder sees the registrations...
    if user_token:
        assert real_token in rec.text()  # ...and the user's own token went to the loopback hub, as asked
    who = next(r for r in results if r[0] == "who")
    assert who[1] == 0, who
    warning = [line for line in who[3].splitlines() if "warning" in line]
    assert len(warning) == 1 and "hub.token_file" in warning[0] and str(root / "synapse.toml") in warning[0]
    assert "warning" not in who[2]  # stderr only: stdout stays clean for scripts and hooks


async def test_hostile_off_machine_uri_is_ignored_for_the_users_own(
    tmp_path: Path, hub_factory: HubFactory, recorder_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untrusted project's non-loopback uri is ignored: the user's configured hub is used instead."""
    user_tok = f"user-file-token-{uuid.uuid4().hex}"
    hub = await hub_factory(token=user_tok)
    rec = await recorder_for(hub)
    tok_file = tmp_path / "user-token"
    tok_file.write_text(user_tok)
    tok_file.chmod(0o600)
    user_config(tmp_path, f'[hub]\nuri = "{rec.uri}"\ntoken_file = "{tok_file}"\n')
    secret = marker()
    root = plant(tmp_path, OFF_MACHINE, secret, pyproject=True)
    monkeypatch.chdir(root)
    started = time.monotonic()
    code, _, err = await run_cli("who")
    assert code == 0, err
    assert "hub.uri, hub.token_file" in err and "pyproject.toml" in err
    code, _, err = await run_cli(
        "hook", "claude-code", "session-start", stdin=hook_input("SessionStart", source="startup")
    )
    assert code == 0 and REFUSAL not in err, err
    assert time.monotonic() - started < 15
    assert secret not in rec.text() and user_tok in rec.text()


@pytest.mark.parametrize("how", ["env", "trusted-project"])
async def test_token_never_goes_to_an_off_machine_ws_uri(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token with plain ws:// off this machine: refused before connecting, one line, fast, on every path."""
    secret = marker()
    root = plant(tmp_path, OFF_MACHINE, secret)
    monkeypatch.chdir(root)
    env: dict[str, str] = {}
    if how == "env":
        env = {"SYNAPSE_URI": OFF_MACHINE, "SYNAPSE_TOKEN": secret}
    else:
        trust(tmp_path, str(root))
    started = time.monotonic()
    results = await every_client_path(env)
    results.append(("wait-forever", *(await run_cli("wait", env=env, timeout=15))))  # not retried
    assert time.monotonic() - started < 30
    for label, code, out, err in results:
        assert secret not in out + err, label
        assert "Traceback" not in err, (label, err)
        if label in ("session-start", "prompt"):
            assert (code, out) == (0, ""), label  # hooks fail open: the assistant carries on
            assert REFUSAL in err, (label, err)
        else:
            assert code == 1, (label, code, out, err)
            said = [line for line in (out + err).splitlines() if REFUSAL in line]
            assert len(said) == 1 and said[0].isascii(), (label, out, err)


async def test_flags_stay_trusted_but_guarded(tmp_path: Path, hub_factory: HubFactory) -> None:
    """--uri/--token are the user's own: honoured on loopback, refused off-machine over ws://, fine over wss://."""
    tok = f"flag-token-{uuid.uuid4().hex}"
    hub = await hub_factory(token=tok)
    assert (await run_cli("who", "--uri", hub.uri, "--token", tok))[0] == 0
    code, _, err = await run_cli("who", "--uri", OFF_MACHINE, "--token", tok)
    assert code == 1 and REFUSAL in err and tok not in err
    code, _, err = await run_cli("send", "--uri", OFF_MACHINE, "--token-file", str(tmp_path / "missing"), "x")
    assert code == 2 and "cannot read token file" in err


# --------------------------------------------------------------------------- trusting a project


async def test_trusted_project_token_file_takes_effect(
    tmp_path: Path, hub_factory: HubFactory, recorder_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Untrusted: the planted token_file is ignored (auth fails). Trusted in the user file: it is used."""
    secret = marker()
    hub = await hub_factory(token=secret)
    rec = await recorder_for(hub)
    root = plant(tmp_path, rec.uri, secret)
    monkeypatch.chdir(root)
    code, _, err = await run_cli("who")
    assert code == 1 and "authentication rejected" in err
    assert secret not in rec.text()
    trust(tmp_path, str(root))
    code, _, err = await run_cli("who")
    assert code == 0, err
    assert "warning" not in err
    assert secret in rec.text()  # positive control: the recorder would have caught it


async def test_trust_entries_expand_tilde_and_match_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~/repo`` trusts $HOME/repo; trusting a parent folder does not trust the projects below it."""
    home = tmp_path / "home"
    root = plant(home, OFF_MACHINE, marker())
    monkeypatch.chdir(root)
    trust(tmp_path, "~/repo")
    code, out, err = await run_cli("config", "show", "--json")
    assert code == 0 and json.loads(out)["project_trusted"] is True and "warning" not in err
    trust(tmp_path, str(home))
    code, out, err = await run_cli("config", "show", "--json")
    data = json.loads(out)
    assert data["project_trusted"] is False
    assert {i["key"] for i in data["ignored"]} == {"hub.uri", "hub.token_file"}


async def test_project_cannot_trust_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[trust] in a project file is ignored (even in a trusted one); a loopback uri is allowed."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "synapse.toml").write_text(
        f'[hub]\nuri = "ws://127.0.0.1:1"\ntoken_file = "/etc/passwd"\n[trust]\nprojects = ["{root}"]\n'
    )
    monkeypatch.chdir(root)
    code, out, err = await run_cli("config", "get", "hub.token_file")
    assert (code, out.strip()) == (0, "")
    assert len(err.strip().splitlines()) == 1  # once per process, though the config loads twice
    assert "trust.projects" in err and "hub.token_file" in err and "hub.uri" not in err
    assert (await run_cli("config", "get", "hub.uri"))[1].strip() == "ws://127.0.0.1:1"
    trust(tmp_path, str(root))
    code, out, err = await run_cli("config", "get", "hub.token_file")
    assert out.strip() == "/etc/passwd"
    assert "trust.projects" in err and "user config only" in err
    code, _, err = await run_cli("config", "set", "trust.projects", "/x")
    assert code == 2 and "user config only" in err


async def test_untrusted_project_cannot_steer_the_wake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugin keys obey the boundary: no queue_wake_remote (where message text goes), no tmux-bridge patterns."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "synapse.toml").write_text(
        '[adapters.codex]\nqueue_wake = true\nqueue_wake_remote = "ws://192.0.2.1:9"\n'
        '[adapters.tmux_bridge]\nclaude_unsafe = "^never$"\n'
    )
    monkeypatch.chdir(root)
    code, out, err = await run_cli("config", "show", "--json")
    data = json.loads(out)
    assert code == 0 and data["project_trusted"] is False
    refused = {"adapters.codex.queue_wake_remote", "adapters.tmux_bridge.claude_unsafe"}
    assert {i["key"] for i in data["ignored"]} == refused
    assert "queue_wake_remote" in err and len(err.strip().splitlines()) == 1
    trust(tmp_path, str(root))
    code, out, err = await run_cli("config", "show", "--json")
    assert code == 0 and json.loads(out)["ignored"] == [] and err == ""


async def test_relative_trust_entry_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = trust(tmp_path, "repo")
    monkeypatch.chdir(tmp_path)
    code, _, err = await run_cli("config", "show")
    assert code == 2 and f"{user}:2: trust.projects entries must be absolute paths" in err
    assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the guard itself


@pytest.mark.parametrize(
    ("uri", "loopback"),
    [
        ("ws://localhost:8876", True),
        ("ws://127.0.0.1:1", True),
        ("ws://127.8.9.10", True),
        ("ws://[::1]:8876", True),
        ("ws://[::ffff:127.0.0.1]:1", True),
        ("ws://0.0.0.0:8876", False),
        ("ws://192.0.2.1:9", False),
        ("ws://localhost.evil.example", False),
        ("ws://127.0.0.1.nip.io", False),
        ("http://127.0.0.1", False),
        ("not a uri", False),
    ],
)
def test_loopback_rule(uri: str, loopback: bool) -> None:
    assert is_loopback_uri(uri) is loopback
    assert (transport_problem(uri) is None) is loopback


def test_guard_rules() -> None:
    """wss:// may go anywhere; an untrusted project may set a loopback uri but never a token file or trust."""
    assert transport_problem("wss://hub.example:443") is None
    assert project_refusal("hub.uri", "ws://127.0.0.1:1", trusted=False) is None
    assert project_refusal("hub.uri", "wss://hub.example", trusted=False) is not None
    assert project_refusal("hub.token_file", "~/t", trusted=False) is not None
    assert project_refusal("hub.token_file", "~/t", trusted=True) is None
    assert project_refusal("trust.projects", ["/"], trusted=True) is not None
    assert project_refusal("wake.jitter", 1.0, trusted=False) is None
    assert not trusted_root(Path("/tmp"), ["tmp", 3])


async def test_client_refuses_before_connecting() -> None:
    """The typed exception, for the token and for a seat secret in the registration; no socket is opened."""
    for client in (
        HubClient(OFF_MACHINE, "x", token="t" * 32),
        HubClient(OFF_MACHINE, "x", registration={"seat_secret": "synseat_abc"}),
    ):
        started = time.monotonic()
        with pytest.raises(InsecureTransport) as caught:
            await client.connect()
        assert time.monotonic() - started < 1 and client.ws is None
        assert REFUSAL in str(caught.value) and caught.value.exit_code == 1 and not caught.value.retryable
    HubClient("wss://192.0.2.1:9", "x", token="t").check_transport()
    HubClient(OFF_MACHINE, "x").check_transport()  # nothing secret to protect


# --------------------------------------------------------------------------- synapse doctor


async def doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    code, out, err = await run_cli("doctor", "--json", *args, env=env)
    return code, json.loads(out), err


async def test_doctor_untrusted_and_trusted(
    tmp_path: Path, hub_factory: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Untrusted: the planted keys are listed as ignored, no token. Trusted: the token file is used."""
    secret = marker()
    hub = await hub_factory(token=secret)
    root = plant(tmp_path, hub.uri, secret)
    monkeypatch.chdir(root)
    code, report, err = await doctor()
    assert code == 0, report
    assert report["uri"] == {"value": hub.uri, "source": str(root / "synapse.toml"), "loopback": True, "tls": False}
    assert report["project"]["trusted"] is False
    assert [i["key"] for i in report["project"]["ignored"]] == ["hub.token_file"]
    assert report["token"]["source"] == "none" and report["token_sent"] is False
    assert report["hub"]["reachable"] is True  # auth rejected, but it answered
    assert err == ""  # the report names the ignored keys itself

    trust(tmp_path, str(root))
    code, report, _ = await doctor()
    assert code == 0, report
    assert report["project"] == {
        "file": str(root / "synapse.toml"),
        "root": str(root),
        "trusted": True,
        "ignored": [],
    }
    assert report["token"] == {
        "source": str(root / "synapse.toml"),
        "file": str(tmp_path / "repo-user-secret"),
        "owner_only": True,
    }
    hub_part = report["hub"]
    assert hub_part["reachable"] is True and "error" not in hub_part, hub_part
    assert hub.core is not None and hub_part["hub_id"] == hub.core.hub_id
    if hub_part["security"] is None:
        assert hub_part["security_text"] == "unknown (older hub)"
    else:
        assert hub_part["security"]["auth"] in ("token", "token+seats")
    assert report["problems"] == []
    code, out, _ = await run_cli("doctor")
    assert code == 0 and "(trusted;" in out and "ok:" in out and secret not in out


async def test_doctor_fails_only_on_broken_protections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token file others can read, or a token for plain ws:// off-machine: exit 1 and say so; never connect."""
    secret = marker()
    root = plant(tmp_path, OFF_MACHINE, secret)
    monkeypatch.chdir(root)
    code, report, _ = await doctor("--no-hub")
    assert code == 0 and report["problems"] == [] and report["uri"]["value"] == "ws://localhost:8876"
    trust(tmp_path, str(root))
    started = time.monotonic()
    code, report, _ = await doctor()
    assert code == 1 and report["hub"]["contacted"] is False
    assert time.monotonic() - started < 10
    assert any(REFUSAL in p for p in report["problems"])
    (tmp_path / "repo-user-secret").chmod(0o644)
    code, report, _ = await doctor("--uri", "wss://192.0.2.1:9", "--no-hub")
    assert code == 1 and report["token"]["owner_only"] is False
    assert any("readable by others" in p for p in report["problems"])
    code, out, _ = await run_cli("doctor", "--no-hub", "--uri", "ws://127.0.0.1:1", "--token", secret)
    assert code == 0 and secret not in out and "from flag:--token" in out


def test_doctor_text_for_an_older_hub() -> None:
    """A welcome without ``security`` reads as "unknown (older hub)"; weak hub settings are warnings, not errors."""
    from synapse_channel.cli.doctor import OLDER_HUB, render

    report: dict[str, Any] = {
        "uri": {"value": "ws://127.0.0.1:1", "source": "default", "loopback": True, "tls": False},
        "token": {"source": "none", "file": None},
        "token_sent": False,
        "project": {"file": None, "root": None, "trusted": None, "ignored": []},
        "hub": {"contacted": True, "reachable": True, "hub_id": "h1", "security": None, "security_text": OLDER_HUB},
        "problems": [],
        "warnings": [],
    }
    text = render(report)
    assert "hub says:    unknown (older hub) (hub h1)" in text and "ok:" in text and text.isascii()

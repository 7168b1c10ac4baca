"""The plugin contract: every hook documented, tested, and firing for real."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from synapse_channel import hookspecs
from synapse_channel.client.waiter import Waiter, WaitSpec
from synapse_channel.events import HubInfo
from synapse_channel.hookspecs import hookimpl
from synapse_channel.plugins import make_plugin_manager

from .conftest import HubFactory, open_raw

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(
    name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "synapse_channel_spec")
)


def test_hooks_are_documented_with_their_signature() -> None:
    """docs/plugins.md shows every hook as name(arg, ...) exactly as hookspecs.py defines it."""
    doc = (ROOT / "docs" / "plugins.md").read_text()
    for name in HOOKS:
        args = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### `{name}({args})`" in doc, f"{name}({args}) is not documented"
    documented = set(re.findall(r"^### `(\w+)\(", doc, re.M))
    assert documented == set(HOOKS), documented ^ set(HOOKS)


def test_every_hook_has_a_test() -> None:
    """Each hook has a test named test_hook_<name> somewhere in tests/."""
    text = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    missing = [h for h in HOOKS if f"def test_hook_{h}(" not in text]
    assert not missing, f"hooks without a test: {missing}"


def test_bundled_wake_jitter_loads_through_its_entry_point() -> None:
    """The bundled plugin is registered by entry point, like a third-party one."""
    pm = make_plugin_manager()
    assert pm.get_plugin("wake_jitter") is not None
    assert make_plugin_manager(disabled=["wake_jitter"]).get_plugin("wake_jitter") is None


class Recorder:
    """Records hook calls; tests await the ones they expect."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def wait_for(self, hook: str, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for name, kwargs in self.calls:
                    if name == hook:
                        return kwargs
                await asyncio.sleep(0.01)

    @hookimpl
    def message_received(self, hub: Any, message: dict[str, Any], recipients: list[str]) -> None:
        self.calls.append(("message_received", {"message": message, "recipients": recipients}))

    @hookimpl
    async def presence_changed(self, agent: str, event: str, online_agents: list[str]) -> None:
        self.calls.append(("presence_changed", {"agent": agent, "event": event}))

    @hookimpl
    def message_acked(self, identity: str, seq: int) -> None:
        self.calls.append(("message_acked", {"identity": identity, "seq": seq}))

    @hookimpl
    def hub_started(self, hub: Any) -> None:
        self.calls.append(("hub_started", {"hub": hub}))

    @hookimpl
    def hub_stopping(self, hub: Any) -> None:
        self.calls.append(("hub_stopping", {"hub": hub}))

    @hookimpl
    def wake_delivered(self, identity: str, frames: list[dict[str, Any]]) -> None:
        self.calls.append(("wake_delivered", {"identity": identity, "frames": frames}))


@pytest.fixture
async def recorded(hub_factory: HubFactory) -> tuple[Any, Recorder]:
    rec = Recorder()
    hub = await hub_factory(pm=make_plugin_manager(entrypoints=False, extra=[rec]))
    return hub, rec


async def test_hook_hub_started(recorded: tuple[Any, Recorder]) -> None:
    """hub_started fires once the hub listens."""
    hub, rec = recorded
    info = (await rec.wait_for("hub_started"))["hub"]
    assert isinstance(info, HubInfo) and (info.uri, info.hub_id) == (hub.uri, hub.core.hub_id)


async def test_hook_hub_stopping(recorded: tuple[Any, Recorder]) -> None:
    """hub_stopping fires on stop."""
    hub, rec = recorded
    uri = hub.uri
    await hub.stop()
    info = (await rec.wait_for("hub_stopping"))["hub"]
    assert isinstance(info, HubInfo) and info.uri == uri


async def test_hook_message_received(recorded: tuple[Any, Recorder]) -> None:
    """message_received carries the stamped frame and the online recipients."""
    hub, rec = recorded
    bob = await open_raw(hub.uri, "bob")
    await bob.send("heartbeat")
    alice = await open_raw(hub.uri, "alice")
    await alice.send("chat", "bob", "hi bob")
    got = await rec.wait_for("message_received")
    assert got["message"]["payload"] == "hi bob" and isinstance(got["message"]["seq"], int)
    assert got["recipients"] == ("bob",)
    await alice.close()
    await bob.close()


async def test_hook_presence_changed(recorded: tuple[Any, Recorder]) -> None:
    """presence_changed fires on join (async implementations are awaited)."""
    hub, rec = recorded
    c = await open_raw(hub.uri, "joiner")
    await c.send("heartbeat")
    assert await rec.wait_for("presence_changed") == {"agent": "joiner", "event": "joined"}
    await c.close()


async def test_hook_message_acked(recorded: tuple[Any, Recorder]) -> None:
    """message_acked fires when a watermark moves."""
    hub, rec = recorded
    c = await open_raw(hub.uri, "w-rx")
    seq = await c.chat_seq("w", "x")
    await c.send("ack", "all", seq=seq, mailbox_for="w")
    assert await rec.wait_for("message_acked") == {"identity": "w", "seq": seq}
    await c.close()


async def test_hook_wake_delay(hub_factory: HubFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin's wake_delay decides the waiter's delay (here: holds a directed wake)."""

    class Slow:
        @hookimpl
        def wake_delay(self, identity: str, one_to_many: bool) -> float:
            return 0.6

    hub = await hub_factory()
    pm = make_plugin_manager(entrypoints=False, extra=[Slow()])
    spec = WaitSpec(uri=hub.uri, for_name="dw", connect_name="dw-rx", timeout=10, pm=pm, mailbox=False)
    task = asyncio.create_task(Waiter(spec).run())
    while "dw-rx" not in hub.core.roster.names:
        await asyncio.sleep(0.01)
    sender = await open_raw(hub.uri, "s")
    loop = asyncio.get_running_loop()
    await sender.send("chat", "dw", "held")
    t0 = loop.time()
    assert await task == 0
    assert loop.time() - t0 >= 0.6  # a lower bound set by the plugin, not a speed assertion
    assert "s: held" in capsys.readouterr().out
    await sender.close()


def test_hook_wake_delay_default_policy() -> None:
    """The bundled policy: 0 for directed wakes, within [0, jitter] for one-to-many."""
    import synapse_wake_jitter as wj

    assert wj.wake_delay("a", {}, one_to_many=False, jitter=8) == 0.0
    values = [wj.wake_delay("a", {}, one_to_many=True, jitter=8) for _ in range(200)]
    assert all(0 <= v <= 8 for v in values) and max(values) > 4


async def test_hook_wake_delivered(hub_factory: HubFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """wake_delivered fires after the waiter printed its frames."""
    rec = Recorder()
    hub = await hub_factory()
    pm = make_plugin_manager(entrypoints=False, extra=[rec])
    spec = WaitSpec(uri=hub.uri, for_name="wd", connect_name="wd-rx", timeout=10, pm=pm, cursor_path=None)
    task = asyncio.create_task(Waiter(spec).run())
    while "wd-rx" not in hub.core.roster.names:
        await asyncio.sleep(0.01)
    sender = await open_raw(hub.uri, "s")
    await sender.send("chat", "wd", "ping")
    assert await task == 0
    got = await rec.wait_for("wake_delivered")
    assert got["identity"] == "wd" and got["frames"][0]["payload"] == "ping"
    assert "s: ping" in capsys.readouterr().out
    await sender.close()


class Connections:
    """Records connection-level hooks on the hub side."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def client_joined(self, name: str, wake_capability: str) -> None:
        self.calls.append(("client_joined", {"name": name, "cap": wake_capability}))

    @hookimpl
    def client_left(self, name: str) -> None:
        self.calls.append(("client_left", {"name": name}))

    @hookimpl
    def message_delivered(self, message: dict[str, Any], recipients: list[str]) -> None:
        self.calls.append(("message_delivered", {"payload": message["payload"], "recipients": recipients}))

    async def wait_for(self, hook: str, timeout: float = 10) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while not any(n == hook for n, _ in self.calls):
                await asyncio.sleep(0.01)
        return [kw for n, kw in self.calls if n == hook]


@pytest.fixture
async def conns(hub_factory: HubFactory) -> tuple[Any, Connections]:
    rec = Connections()
    hub = await hub_factory(pm=make_plugin_manager(entrypoints=False, extra=[rec]))
    return hub, rec


async def test_hook_client_joined(conns: tuple[Any, Connections]) -> None:
    """client_joined carries the name and its wake capability."""
    hub, rec = conns
    c = await open_raw(hub.uri, "p/a-rx")
    await c.send("heartbeat", wake_capability="passive")
    assert await rec.wait_for("client_joined") == [{"name": "p/a-rx", "cap": "passive"}]
    await c.close()


async def test_hook_client_left(conns: tuple[Any, Connections]) -> None:
    """client_left fires when the holder of a name disconnects."""
    hub, rec = conns
    c = await open_raw(hub.uri, "leaver")
    await c.send("heartbeat")
    await c.expect("welcome")
    await c.close()
    assert await rec.wait_for("client_left") == [{"name": "leaver"}]


async def test_hook_message_delivered(conns: tuple[Any, Connections]) -> None:
    """message_delivered fires for a live directed delivery and for a mailbox replay."""
    hub, rec = conns
    s = await open_raw(hub.uri, "s")
    await s.send("chat", "later", "queued one")
    await s.sync()
    w = await open_raw(hub.uri, "later-rx")
    await w.send("heartbeat", mailbox=True, since_seq=0, mailbox_for="later")
    await w.expect("chat", replayed=True)
    await s.send("chat", "later", "live one")
    await w.expect("chat", payload="live one")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len([c for c in rec.calls if c[0] == "message_delivered"]) < 2:
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
    got = [kw for n, kw in rec.calls if n == "message_delivered"]
    later = ("later",)
    assert got == [{"payload": "queued one", "recipients": later}, {"payload": "live one", "recipients": later}]
    await s.close()
    await w.close()


async def test_hook_client_connected(hub_factory: HubFactory) -> None:
    """client_connected and client_disconnected fire in the client."""
    from synapse_channel.client.connection import HubClient

    seen: list[str] = []

    class Client:
        @hookimpl
        def client_connected(self, client: Any, welcome: dict[str, Any]) -> None:
            seen.append(f"connected {client.name} {welcome['type']}")

        @hookimpl
        def client_disconnected(self, code: int | None, reason: str) -> None:
            seen.append(f"disconnected {code}")

    hub = await hub_factory()
    client = HubClient(hub.uri, "hooked", pm=make_plugin_manager(entrypoints=False, extra=[Client()]))
    await client.connect()
    await client.close()
    assert seen == ["connected hooked welcome", "disconnected None"]


async def test_hook_client_disconnected(hub_factory: HubFactory) -> None:
    """client_disconnected reports the hub's close code."""
    from synapse_channel.client.connection import HubClient, HubClosed

    codes: list[Any] = []

    class Client:
        @hookimpl
        def client_disconnected(self, code: int | None, reason: str) -> None:
            codes.append((code, reason))

    hub = await hub_factory()
    pm = make_plugin_manager(entrypoints=False, extra=[Client()])
    first = HubClient(hub.uri, "dup", registration={"takeover": True}, pm=pm)
    await first.connect()
    second = HubClient(hub.uri, "dup", registration={"takeover": True})
    await second.connect()
    with pytest.raises(HubClosed):
        while True:
            await first.recv(5)
    await first.close()
    await second.close()
    assert codes == [(4010, "superseded")]


async def test_hook_wake_requested(hub_factory: HubFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """wake_requested tells the delay the policy chose before the waiter sleeps."""
    seen: list[tuple[str, float]] = []

    class Watch:
        @hookimpl
        def wake_requested(self, identity: str, delay: float) -> None:
            seen.append((identity, delay))

    hub = await hub_factory()
    pm = make_plugin_manager(entrypoints=False, extra=[Watch()])
    spec = WaitSpec(uri=hub.uri, for_name="wr", connect_name="wr-rx", timeout=10, pm=pm, mailbox=False)
    task = asyncio.create_task(Waiter(spec).run())
    while "wr-rx" not in hub.core.roster.names:
        await asyncio.sleep(0.01)
    s = await open_raw(hub.uri, "s")
    await s.send("chat", "wr", "go")
    assert await task == 0
    assert seen == [("wr", 0.0)]
    await s.close()
    capsys.readouterr()


def test_hook_configure() -> None:
    """configure is historic: a plugin registered after the call still receives the config."""
    from synapse_channel.config import load_config

    got: list[Any] = []

    class Late:
        @hookimpl
        def configure(self, config: Any) -> None:
            got.append(config)

    pm = make_plugin_manager(entrypoints=False)
    config = load_config()
    pm.hook.configure.call_historic(kwargs={"config": config})
    pm.register(Late())
    assert got == [config]


def test_hook_register_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugin-declared keys are accepted (and typed) in synapse.toml; undeclared ones are not."""
    from synapse_channel.config import ConfigError, load_config, plugin_settings

    class Declares:
        @hookimpl
        def register_settings(self, register: Any) -> None:
            register("demo.level", int, 3, "How loud.")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "synapse.toml").write_text("[demo]\nlevel = 5\n")
    pm = make_plugin_manager(entrypoints=False, extra=[Declares()])
    assert load_config(extra=plugin_settings(pm)).get("demo.level") == 5
    with pytest.raises(ConfigError, match=r"synapse.toml:2: unknown key 'demo.level'"):
        load_config()


def test_hook_register_commands() -> None:
    """register_commands adds click commands to the CLI group."""
    import click

    class Adds:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            @click.command("hello-plugin")
            def hello() -> None:
                click.echo("hi")

            cli.add_command(hello)

    group = click.Group()
    make_plugin_manager(entrypoints=False, extra=[Adds()]).hook.register_commands(cli=group)
    assert "hello-plugin" in group.commands


def test_hook_register_wake_adapters() -> None:
    """register_wake_adapters collects adapters by name (the first registration wins)."""
    from synapse_channel.plugins import wake_adapters

    class Offers:
        @hookimpl
        def register_wake_adapters(self, register: Any) -> None:
            register("fake", "adapter-object")
            register("fake", "shadowed")

    assert wake_adapters(make_plugin_manager(entrypoints=False, extra=[Offers()])) == {"fake": "adapter-object"}


async def test_a_plugin_cannot_change_a_delivered_message(hub_factory: HubFactory) -> None:
    """Hook arguments are frozen: a plugin that rewrites a relayed chat fails, and the mailbox replay is untouched."""
    attempts: list[str] = []

    class Tamperer:
        @hookimpl
        def message_received(self, hub: Any, message: Any, recipients: Any) -> None:
            for label, mutate in (
                ("payload", lambda: message.__setitem__("payload", "tampered")),
                ("recipients", lambda: recipients.append("mallory")),
                ("hub", lambda: setattr(hub, "uri", "ws://evil:1")),
            ):
                try:
                    mutate()
                    attempts.append(f"{label}: changed")
                except (TypeError, AttributeError):
                    attempts.append(f"{label}: refused")

    hub = await hub_factory(pm=make_plugin_manager(entrypoints=False, extra=[Tamperer()]))
    s = await open_raw(hub.uri, "s")
    await s.send("chat", "later", "the original")
    await s.sync()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(attempts) < 3:
        assert loop.time() < deadline, attempts
        await asyncio.sleep(0.01)
    assert attempts == ["payload: refused", "recipients: refused", "hub: refused"]
    w = await open_raw(hub.uri, "later-rx")
    await w.send("heartbeat", mailbox=True, since_seq=0, mailbox_for="later")
    replayed = await w.expect("chat", replayed=True)
    assert replayed["payload"] == "the original"
    await w.close()
    await s.close()


def test_freeze_is_deep() -> None:
    """Nested mappings and lists in a frozen frame are read-only too (a shallow proxy would leak them)."""
    from synapse_channel.events import freeze

    frozen = freeze({"a": {"b": [1, {"c": 2}]}, "s": {1}})
    with pytest.raises(TypeError):
        frozen["a"]["b"][1]["c"] = 3
    assert frozen["a"]["b"] == (1, {"c": 2}) and frozen["s"] == frozenset({1})
    with pytest.raises(AttributeError):
        frozen["a"]["b"].append(4)

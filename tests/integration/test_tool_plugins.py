"""Tool plugins: the example package in docs/examples is discovered through the `swarm.tools`
entry-point group (installed for real: its package and a dist-info on sys.path, as pip leaves
them) and called by an agent end to end; SWARM_TOOLS_ENABLED / _DISABLED choose the tools; a
broken plugin does not stop a worker unless it was asked for; plugins get no secrets. The
example runs both sandboxed (SWARM_PLUGIN_ISOLATION=bwrap) and in the worker process (off)."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from swarm.exceptions import ConfigError
from swarm.runtime import LocalRuntime, run_spec
from swarm.sim.params import call_directive
from swarm.store.store import StateStore
from swarm.store.types import Attachment
from swarm.tools.plugin import ENTRY_POINT_GROUP, discover
from tests.conftest import make_settings

EXAMPLE = Path(__file__).parents[2] / "docs/examples/swarm-tool-example"
BUILTINS = {"echo", "python", "web_fetch", "web_search"}


def _install(site: Path, name: str, entry_points: str, package: Path | None = None, module: str = "") -> None:
    """What `pip install` leaves on sys.path: the package, and a dist-info naming its entry points."""
    if package is not None:
        shutil.copytree(package, site / package.name)
    if module:
        (site / f"{name}.py").write_text(textwrap.dedent(module))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")


@pytest.fixture
def example_installed(tmp_path, monkeypatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    _install(
        site,
        "swarm_tool_example",
        "word_count = swarm_tool_example:WordCountTool",
        package=EXAMPLE / "swarm_tool_example",
    )
    monkeypatch.syspath_prepend(str(site))
    return site


@pytest.mark.parametrize("isolation", ["bwrap", "off"])
def test_the_example_plugin_is_discovered_and_called_by_an_agent(tmp_path, example_installed, db_url, sim, isolation):
    assert "word_count" in {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    settings = make_settings(tmp_path, db_url, sim.url, plugin_isolation=isolation)
    tools = discover(settings)
    assert set(tools.names()) >= BUILTINS | {"word_count"} and tools.plugins == {"word_count"}
    schema = next(s for s in tools.schemas() if s["function"]["name"] == "word_count")["function"]["parameters"]
    assert schema["properties"]["paths"]["type"] == "array" and schema["required"] == ["paths"]

    store = StateStore.from_url(db_url)
    task = "count " + call_directive("word_count", {"paths": ["notes.txt", "missing.txt"]})
    with LocalRuntime(settings, store=store) as rt:
        notes = Attachment("notes.txt", b"one two three\nfour five\n", "text/plain")
        run_id = rt.submit(dataclasses.replace(run_spec(settings, task), attachments=(notes,)))
        done = rt.wait(run_id, timeout=60)
    assert done.status == "succeeded", done.reason
    answer = store.run_summary(run_id).result or ""
    assert "notes.txt: 2 lines, 5 words, 24 characters" in answer, answer
    assert "missing.txt: no such file in the workspace" in answer

    # Bad arguments from the model go back to it as a tool error, validated by the pydantic model.
    task = "count " + call_directive("word_count", {"paths": "notes.txt"})
    with LocalRuntime(settings, store=store) as rt:
        run_id = rt.submit(run_spec(settings, task))
        done = rt.wait(run_id, timeout=60)
    assert "argument 'paths' must be a list" in (store.run_summary(run_id).result or "")
    store.engine.dispose()


def test_settings_choose_the_tools(tmp_path, example_installed, sqlite_url):
    base = make_settings(tmp_path, sqlite_url, "http://127.0.0.1:9")
    only = discover(base.model_copy(update={"tools_enabled": "python, word_count"}))
    assert only.names() == ["python", "word_count"]
    without = discover(base.model_copy(update={"tools_disabled": "word_count,web_search"}))
    assert set(without.names()) == BUILTINS - {"web_search"}
    with pytest.raises(ConfigError, match="SWARM_TOOLS_ENABLED names nope"):
        discover(base.model_copy(update={"tools_enabled": "python,nope"}))


def test_a_broken_plugin_is_skipped_unless_asked_for_and_plugins_get_no_secrets(tmp_path, monkeypatch, sqlite_url):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "broken_tool", "broken = broken_tool:Tool", module="raise RuntimeError('boom')\n")
    _install(
        site,
        "peek_tool",
        "peek = peek_tool:make\nshadow = peek_tool:shadow",
        module="""
        from swarm.tools.echo import EchoTool

        class Peek(EchoTool):
            name = "peek"

        def make(settings):
            tool = Peek(settings)
            tool.seen = settings
            return tool

        def shadow(settings):
            return EchoTool(settings)  # named "echo": a built-in's name is not taken over
        """,
    )
    monkeypatch.syspath_prepend(str(site))
    settings = make_settings(
        tmp_path, sqlite_url, "http://127.0.0.1:9", llm_api_key="sk-secret", broker_url="redis://:pw@h/0"
    )
    # Under bwrap (the default) the plugins are loaded in a sandbox, and their failures come back from it.
    tools = discover(settings)
    assert "broken" not in tools.names() and "peek" in tools.names() and tools.plugins == {"peek"}
    with pytest.raises(ConfigError, match=r"names broken, which failed to load \(broken: RuntimeError: boom\)"):
        discover(settings.model_copy(update={"tools_enabled": "broken"}))
    # In the worker process (off), what the plugin is handed can be looked at directly.
    settings = settings.model_copy(update={"plugin_isolation": "off"})
    tools = discover(settings)
    assert "broken" not in tools.names() and "peek" in tools.names() and tools.plugins == {"peek"}
    seen = tools.get("peek").seen  # type: ignore[union-attr]
    assert seen.llm_api_key.get_secret_value() == "" and seen.database_url == "" and seen.broker_url == ""
    with pytest.raises(ConfigError, match=r"names broken, which failed to load \(broken: RuntimeError: boom\)"):
        discover(settings.model_copy(update={"tools_enabled": "broken"}))

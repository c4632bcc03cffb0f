"""MCP server configs (the mcpServers JSON users already have) are checked with clear messages;
tool names follow the 64-character function-name rules; the simulator can call them."""

from __future__ import annotations

import json
import re

import pytest

from swarm.domain import mcp
from swarm.exceptions import ConfigError, InputError
from swarm.sim.params import SimParams, decode_args, parse_directive, subcall_directive
from swarm.tools.mcp_hub import check_config

STDIO = {"command": "npx", "args": ["-y", "@scope/server"], "env": {"LOG": "1"}}
HTTP = {"url": "https://mcp.example/mcp", "headers": {"X-Team": "a"}, "timeout": 5, "agents": "subagents"}


def test_a_claude_desktop_config_parses_into_stdio_and_http_servers() -> None:
    servers = mcp.parse(json.dumps({"mcpServers": {"files": STDIO, "search": HTTP}}), "cfg")
    files, search = servers
    assert (files.transport, files.command, files.args, files.timeout, files.agents) == (
        "stdio",
        "npx",
        ("-y", "@scope/server"),
        60.0,
        "both",
    )
    assert (search.transport, search.url, search.timeout) == ("http", "https://mcp.example/mcp", 5.0)
    assert search.offered_to(is_orchestrator=False) and not search.offered_to(is_orchestrator=True)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("{not json", "not valid JSON"),
        ({"servers": {}}, '{"mcpServers"'),
        ({"mcpServers": {"a": {"args": []}}}, "give either 'command'"),
        ({"mcpServers": {"a": {"command": "x", "url": "http://h/mcp"}}}, "not both"),
        ({"mcpServers": {"a": {"command": "x", "enviroment": {}}}}, "unknown key(s) enviroment"),
        ({"mcpServers": {"a": {"command": ""}}}, "command must be a non-empty string"),
        ({"mcpServers": {"a": {"url": "ftp://h"}}}, "http:// or https://"),
        ({"mcpServers": {"a": {"url": "http://h/mcp", "env": {}}}}, "env does not apply"),
        ({"mcpServers": {"a": {"command": "x", "timeout": 0}}}, "timeout must be"),
        ({"mcpServers": {"a": {"command": "x", "agents": "all"}}}, "agents must be"),
        ({"mcpServers": {"a" * 33: {"command": "x"}}}, "1 to 32 characters"),
        ({"mcpServers": {"a b": {"command": "x"}, "a_b": {"command": "y"}}}, "the same once made fit"),
        ({"mcpServers": {"a": {"command": "x", "env": {"N": 1}}}}, "env must be an object of string values"),
    ],
)
def test_a_bad_config_is_refused_saying_what_is_wrong(config: object, says: str) -> None:
    text = config if isinstance(config, str) else json.dumps(config)
    with pytest.raises(ConfigError) as exc:
        mcp.parse(text, "run.json")
    assert says in str(exc.value)
    assert str(exc.value).startswith("run.json")


def test_a_runs_config_may_not_carry_literal_secrets_only_references() -> None:
    literal = {"mcpServers": {"gh": {"command": "gh-mcp", "env": {"GITHUB_TOKEN": "ghp_123"}}}}
    with pytest.raises(InputError, match=r"GITHUB_TOKEN.*looks like a secret.*\$\{MY_TOKEN\}"):
        check_config(json.dumps(literal), "--mcp run.json", {"TOKEN"})
    header = {"mcpServers": {"s": {"url": "https://h/mcp", "headers": {"Authorization": "Bearer abc"}}}}
    with pytest.raises(InputError, match="Authorization"):
        check_config(json.dumps(header), "--mcp run.json", {"TOKEN"})
    ok = {"mcpServers": {"s": {"url": "https://h/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}}}}
    stored = json.loads(check_config(json.dumps(ok), "--mcp run.json", {"TOKEN"}))
    assert stored["mcpServers"]["s"]["headers"] == {"Authorization": "Bearer ${TOKEN}"}  # never expanded
    # Only the variables the deployment lets runs use: never SWARM_DATABASE_URL into a server of the user's.
    leak = {"mcpServers": {"s": {"command": "x", "env": {"DB": "${SWARM_DATABASE_URL}"}}}}
    refused = r"\$\{SWARM_DATABASE_URL\} may not be used.*SWARM_MCP_RUN_VARS \(now: TOKEN\)"
    with pytest.raises(InputError, match=refused):
        check_config(json.dumps(leak), "--mcp run.json", {"TOKEN"})
    # No network for a command a run chose: no route to swarm's database or broker.
    networked = {"mcpServers": {"s": {"command": "x", "network": True}}}
    with pytest.raises(InputError, match="only the deployment's own"):
        check_config(json.dumps(networked), "--mcp run.json", set())


def test_references_expand_only_from_the_variables_given() -> None:
    (server,) = mcp.parse(json.dumps({"mcpServers": {"s": {"command": "x", "env": {"T": "${TOK}"}}}}), "cfg")
    assert mcp.resolved(server, {"TOK": "v"}, "cfg").env == {"T": "v"}
    with pytest.raises(ConfigError, match=r"\$\{TOK\} is not available"):
        mcp.resolved(server, {}, "cfg")


def test_tool_names_are_sanitised_to_64_characters_and_stay_distinct() -> None:
    assert mcp.tool_name("files", "read_file") == "mcp__files__read_file"
    assert mcp.tool_name("web", "fetch.page v2") == "mcp__web__fetch_page_v2"
    assert mcp.tool_name("My Files__v2", "x") == "mcp__My_Files_v2__x"  # '__' only separates the tool
    assert mcp.server_of(mcp.tool_name("_odd__", "t")) == mcp.server_part("_odd__") == "odd"
    long_a, long_b = mcp.tool_name("s" * 32, "t" * 40 + "a"), mcp.tool_name("s" * 32, "t" * 40 + "b")
    for name in (long_a, long_b):
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) and len(name) == 64
        assert mcp.server_of(name) == "s" * 32
    assert long_a != long_b
    assert mcp.server_of("python") is None and mcp.server_of("mcp__x") is None


def test_the_simulator_calls_a_64_character_mcp_tool_name() -> None:
    name = mcp.tool_name("s" * 32, "t" * 41)
    directive = f"#sim call={name} args=eyJhIjoxfQ"
    params = SimParams().merged(parse_directive(directive))
    assert params.call == name and decode_args(params.args or "") == {"a": 1}
    sub = SimParams().merged(parse_directive(subcall_directive(name, {"text": "x"}, agents=3)))
    assert (sub.subcall, sub.agents, sub.tools) == (name, 3, 1)
    assert f"subcall={name}" in sub.subagent_directive()


def test_a_server_installed_under_a_hidden_directory_is_bound_back_read_only(tmp_path):
    from swarm.tools.mcp_session import bound_back

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    script = tmp_path / "checkout" / "server.py"
    script.parent.mkdir()
    script.write_text("")
    hidden = ["/tmp", str(tmp_path / "home")]
    got = bound_back(str(venv / "bin" / "python"), [str(script), "--flag"], hidden)
    assert got == ([str(venv), str(script.parent)] if str(tmp_path).startswith("/tmp/") else [])
    # Never a hidden directory itself, nor one that holds it.
    assert bound_back("/tmp/x", [], ["/tmp"]) == []
    assert bound_back("/usr/bin/env", ["/tmp"], ["/tmp"]) == []

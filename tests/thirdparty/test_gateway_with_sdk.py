"""Toolgate seen by a third-party MCP client: the official MCP Python SDK, over streamable HTTP,
against the real binary relaying the reference server ``server-everything``."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime

import httpx2
import pytest
from mcp import MCPError
from mcp.types import Tool

from conftest import ALLOWED, DENIED, World, free_port
from helpers import call_tool, dump, list_tools_direct, with_session

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-http", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def definition(tool: Tool) -> dict:
    """A tool's definition as sent, without its name. Without `execution` too: the gateway does not
    relay task-execution hints (it offers no tasks), so `execution.taskSupport` is left out."""
    d = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    d.pop("name")
    d.pop("execution", None)
    return d


def exposed(world: World, tool: str) -> str:
    return f"{world.connector}__{tool}"


def refused(world: World, user: str, name: str, arguments: dict | None = None) -> MCPError:
    """Calls `name` as `user` and returns the JSON-RPC error it must get."""
    with pytest.raises(MCPError) as info:
        call_tool(world.gw.mcp_url, world.tokens[user], name, arguments or {})
    return info.value


# (a) ----------------------------------------------------------------------------------------


def test_lists_exactly_the_allowed_tools_prefixed(world: World) -> None:
    tools = list_tools_direct(world.gw.mcp_url, world.tokens["alice"])
    names = sorted(t.name for t in tools)
    assert names == sorted(exposed(world, t) for t in ALLOWED)
    assert exposed(world, DENIED) not in names
    # Everything but the name is relayed as the upstream describes it.
    upstream = {t.name: t for t in list_tools_direct(world.upstream.url)}
    for t in tools:
        original = upstream[t.name.removeprefix(f"{world.connector}__")]
        assert t.description == original.description
        assert t.input_schema == original.input_schema


def test_tool_definitions_are_relayed_unchanged_but_for_the_name(world: World) -> None:
    upstream = {t.name: definition(t) for t in list_tools_direct(world.upstream.url)}
    relayed = list_tools_direct(world.gw.mcp_url, world.tokens["bob"])
    assert relayed
    for t in relayed:
        assert t.name.startswith(f"{world.connector}__")
        assert definition(t) == upstream[t.name.removeprefix(f"{world.connector}__")], t.name


def test_a_user_in_no_group_sees_no_tools(world: World) -> None:
    assert list_tools_direct(world.gw.mcp_url, world.tokens["dave"]) == []


# (b) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [("echo", {"message": "hello through toolgate"}), ("get-sum", {"a": 19, "b": 23})],
)
def test_allowed_call_returns_the_upstream_result_unchanged(world: World, tool: str, arguments: dict) -> None:
    direct = call_tool(world.upstream.url, None, tool, arguments)
    via = call_tool(world.gw.mcp_url, world.tokens["alice"], exposed(world, tool), arguments)
    assert via.is_error is not True, dump(via)
    assert dump(via) == dump(direct)


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("get-structured-content", {"location": "Chicago"}),  # structuredContent
        ("get-tiny-image", {}),  # image content
        ("get-annotated-message", {"messageType": "error", "includeImage": True}),  # annotations
        ("get-resource-links", {"count": 2}),  # resource_link content
        ("get-resource-reference", {"resourceType": "Text", "resourceId": 1}),  # embedded resource
        ("get-structured-content", {"location": "Atlantis"}),  # the upstream refuses the arguments
    ],
)
def test_richer_results_are_relayed_unchanged(world: World, tool: str, arguments: dict) -> None:
    def outcome(url: str, token: str | None, name: str) -> tuple:
        try:
            return ("result", dump(call_tool(url, token, name, arguments)))
        except MCPError as e:
            return ("error", e.code, e.message, e.data)

    direct = outcome(world.upstream.url, None, tool)
    via = outcome(world.gw.mcp_url, world.tokens["bob"], exposed(world, tool))
    assert via == direct


def test_echo_text_is_the_upstreams(world: World) -> None:
    via = call_tool(world.gw.mcp_url, world.tokens["alice"], exposed(world, "echo"), {"message": "ping"})
    assert [c.model_dump(exclude_none=True) for c in via.content] == [{"type": "text", "text": "Echo: ping"}]


# (c) ----------------------------------------------------------------------------------------


def test_a_tool_not_allowed_is_refused_with_its_name(world: World) -> None:
    name = exposed(world, DENIED)
    err = refused(world, "alice", name)
    assert name in err.message and "not permitted" in err.message, err.message


@pytest.mark.parametrize("name", ["everything__no-such-tool", "nosuchconnector__echo", "echo"])
def test_unknown_names_are_refused_like_denied_ones(world: World, name: str) -> None:
    err = refused(world, "alice", name)
    assert name in err.message and "not permitted" in err.message, err.message
    denied = refused(world, "alice", exposed(world, DENIED))
    assert err.code == denied.code


# (d) ----------------------------------------------------------------------------------------


def test_block_beats_allow_star_in_the_same_policy(world: World) -> None:
    # bob's only group allows "*" and blocks "get-env" and "trigger-*".
    names = sorted(t.name for t in list_tools_direct(world.gw.mcp_url, world.tokens["bob"]))
    expected = sorted(
        exposed(world, t) for t in world.upstream.tools if t != DENIED and not t.startswith("trigger-")
    )
    assert names == expected
    assert any(t.startswith("trigger-") for t in world.upstream.tools), "the glob must block something"
    for tool in world.upstream.tools:
        if tool == DENIED or tool.startswith("trigger-"):
            err = refused(world, "bob", exposed(world, tool))
            assert exposed(world, tool) in err.message and "not permitted" in err.message, err.message
    ok = call_tool(world.gw.mcp_url, world.tokens["bob"], exposed(world, "echo"), {"message": "x"})
    assert ok.is_error is not True


def test_block_in_one_group_beats_allow_in_another(world: World) -> None:
    # carol is in "engineers" (allows echo, get-sum) and in "no-echo" (blocks "ech*").
    names = [t.name for t in list_tools_direct(world.gw.mcp_url, world.tokens["carol"])]
    assert names == [exposed(world, "get-sum")]
    err = refused(world, "carol", exposed(world, "echo"), {"message": "x"})
    assert exposed(world, "echo") in err.message and "not permitted" in err.message, err.message


# (e) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-real-token", "Bearer", "Basic YWxpY2U6c2VjcmV0"],
    ids=["missing", "invalid", "scheme-only", "basic"],
)
def test_without_a_valid_token_the_endpoint_answers_401(world: World, authorization: str | None) -> None:
    headers = dict(MCP_HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization
    r = httpx2.post(world.gw.mcp_url, json=INIT, headers=headers, timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers


def test_an_admin_api_token_is_not_an_agent_identity(world: World) -> None:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {world.gw.admin_token}"}
    r = httpx2.post(world.gw.mcp_url, json=INIT, headers=headers, timeout=30)
    assert r.status_code == 401, r.text


def test_the_sdk_cannot_connect_with_an_invalid_token(world: World) -> None:
    # mcp 2.3 reports the 401 on initialize as MCPError(-32603, "Server returned an error
    # response"); the status itself is checked with plain HTTP above.
    with pytest.raises(MCPError):
        with_session(world.gw.mcp_url, "not-a-real-token", lambda s: s.list_tools())


# (f) ----------------------------------------------------------------------------------------


def test_audit_shows_the_allowed_and_the_denied_call(world: World) -> None:
    marker = f"audit-{uuid.uuid4()}"
    call_tool(world.gw.mcp_url, world.tokens["alice"], exposed(world, "echo"), {"message": marker})
    refused(world, "alice", exposed(world, DENIED))

    page = world.gw.api("GET", "/api/v1/audit?limit=20&kind=tool_call", 200)
    mine = [e for e in page["items"] if e["principal"] == "alice"]
    assert len(mine) >= 2, page
    deny, allow = mine[0], mine[1]  # newest first: the denied call came last
    assert allow["connector"] == "everything"
    assert allow["tool"] == "echo"
    assert allow["decision"] == "allow"
    assert allow["outcome"] == "ok"
    assert deny["connector"] == "everything"
    assert deny["tool"] == DENIED
    assert deny["decision"] == "deny"
    assert deny["outcome"] == "denied"
    for e in (allow, deny):
        assert isinstance(e["latency_ms"], (int, float)) and e["latency_ms"] >= 0, e
        datetime.fromisoformat(e["at"].replace("Z", "+00:00"))
    assert datetime.fromisoformat(allow["at"].replace("Z", "+00:00")) <= datetime.fromisoformat(
        deny["at"].replace("Z", "+00:00")
    )
    # Who called from where, and what was sent (hashed as sent, kept redacted and searchable).
    assert allow["client_name"].startswith("mcp"), allow  # the SDK's default clientInfo
    assert allow["user_agent"], allow
    assert allow["ip"] == "127.0.0.1"
    sent = json.dumps({"message": marker}, separators=(",", ":")).encode()
    assert allow["args_hash"] == hashlib.sha256(sent).hexdigest()
    found = world.gw.api("GET", f"/api/v1/audit?q={marker}", 200)["items"]
    assert [e["id"] for e in found] == [allow["id"]], found
    with world.gw.admin() as c:
        r = c.get("/api/v1/audit/export", params={"format": "jsonl", "subject": "alice", "q": marker})
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [e["id"] for e in lines] == [allow["id"]]


def test_audit_api_requires_the_admin_token(world: World) -> None:
    r = httpx2.get(f"{world.gw.base}/api/v1/audit", timeout=30)
    assert r.status_code == 401
    r = httpx2.get(
        f"{world.gw.base}/api/v1/audit", headers={"Authorization": f"Bearer {world.tokens['alice']}"}, timeout=30
    )
    assert r.status_code == 401, "a personal token must not read the audit log"


# a broken connector -------------------------------------------------------------------------


def test_an_unreachable_connector_hides_nothing_else_and_its_calls_fail_audited(world: World) -> None:
    gw = world.gw
    dead = gw.api("POST", "/api/v1/connectors", 201, {
        "name": "dead", "url": f"http://127.0.0.1:{free_port()}/mcp", "transport": "streamable_http",
    })
    uid = gw.api("POST", "/api/v1/users", 201, {"user_name": "erin", "display_name": "Erin"})["id"]
    token = gw.api("POST", f"/api/v1/users/{uid}/tokens", 201, {"name": "sdk"})["token"]
    gid = gw.api("POST", "/api/v1/groups", 201, {"display_name": "both"})["id"]
    gw.api("PUT", f"/api/v1/groups/{gid}/members/{uid}", 204)
    gw.api("PUT", f"/api/v1/groups/{gid}/policies/{world.connector_id}", 200, {"allow": ["echo"], "block": []})
    gw.api("PUT", f"/api/v1/groups/{gid}/policies/{dead['id']}", 200, {"allow": ["*"], "block": []})

    assert [t.name for t in list_tools_direct(gw.mcp_url, token)] == [exposed(world, "echo")]
    with pytest.raises(MCPError) as info:
        call_tool(gw.mcp_url, token, "dead__echo", {"message": "x"})
    assert "dead__echo" in info.value.message, info.value.message

    latest = gw.api("GET", "/api/v1/audit?limit=1&kind=tool_call", 200)["items"][0]
    assert (latest["principal"], latest["connector"], latest["tool"]) == ("erin", "dead", "echo")
    # Its tools could never be discovered, so policy cannot allow them (not in the catalog): the
    # row says so, and that the upstream is why.
    assert latest["decision"] == "deny"
    assert latest["outcome"] == "upstream_error"
    assert "not in the catalog" in latest["rule"], latest["rule"]
    assert "unreachable" in latest["error"] or "unhealthy" in latest["error"], latest["error"]

"""Just-in-time elevation and per-call approval as the official MCP Python SDK sees them, against
the real binary and ``server-everything``: the refusal names the profile to request (JSON-RPC
-32004 with data), the agent asks through ``toolgate__request_elevation``, the elevated call
equals a direct call, a revoke takes effect on the next call, and a tool marked "approve each
call" answers -32005 with an approval id that the admin API shows with the redacted arguments."""

from __future__ import annotations

import pytest
from mcp import MCPError

from conftest import DENIED, World
from helpers import call_tool, dump, list_tools_direct

PROFILE = "Env reader"


@pytest.fixture(scope="module")
def jit(world: World) -> dict[str, str]:
    """A person in a group that may echo, eligible for an auto-approving profile unlocking
    get-env; a second group approves."""
    gw = world.gw
    uid = gw.api("POST", "/api/v1/users", 201, {"user_name": "jit-person", "display_name": "Jit Person"})["id"]
    token = gw.api("POST", f"/api/v1/users/{uid}/tokens", 201, {"name": "sdk"})["token"]
    gid = gw.api("POST", "/api/v1/groups", 201, {"display_name": "jit-engineers"})["id"]
    gw.api("PUT", f"/api/v1/groups/{gid}/policies/{world.connector_id}", 200, {"allow": ["echo"]})
    gw.api("PUT", f"/api/v1/groups/{gid}/members/{uid}", 204)
    approvers = gw.api("POST", "/api/v1/groups", 201, {"display_name": "jit-approvers"})["id"]
    profile = gw.api("POST", "/api/v1/elevation/profiles", 201, {
        "name": PROFILE,
        "targets": [{"connector": world.connector, "tools": [DENIED]}],
        "eligible_groups": [gid],
        "approver_group": approvers,
        "max_minutes": 30,
        "auto_approve": True,
    })
    return {"uid": uid, "token": token, "group": gid, "approvers": approvers, "profile": profile["id"]}


def test_the_refusal_names_the_profile_and_the_agent_can_ask(world: World, jit: dict[str, str]) -> None:
    token = jit["token"]
    tools = {t.name: t for t in list_tools_direct(world.gw.mcp_url, token)}
    eligible = tools[f"{world.connector}__{DENIED}"]
    assert f'Needs just-in-time elevation "{PROFILE}"' in (eligible.description or "")
    assert "toolgate__request_elevation" in tools
    assert PROFILE in tools["toolgate__request_elevation"].input_schema["properties"]["profile"]["enum"]

    with pytest.raises(MCPError) as info:
        call_tool(world.gw.mcp_url, token, f"{world.connector}__{DENIED}", {})
    assert info.value.code == -32004
    assert info.value.data["profiles"] == [PROFILE]
    assert info.value.data["link"].endswith("/access?profile=Env+reader")

    asked = call_tool(world.gw.mcp_url, token, "toolgate__request_elevation",
                      {"profile": PROFILE, "justification": "debug the deployment"})
    assert not asked.is_error, asked
    assert "is active until" in asked.content[0].text

    # Elevated, the call is relayed unchanged and recorded with its elevation.
    via = call_tool(world.gw.mcp_url, token, f"{world.connector}__{DENIED}", {})
    direct = call_tool(world.upstream.url, None, DENIED, {})
    assert dump(via) == dump(direct)
    active = world.gw.api("GET", f"/api/v1/elevations?status=active&subject={jit['uid']}", 200)
    assert len(active) == 1 and active[0]["source"] == "agent"
    events = world.gw.api("GET", "/api/v1/audit?kind=tool_call&elevated_only=true&limit=10", 200)["items"]
    assert any(e["elevation_id"] == active[0]["id"] and e["tool"] == DENIED for e in events)

    # Revoked by an admin: the next call is refused again.
    world.gw.api("POST", f"/api/v1/elevations/{active[0]['id']}/revoke", 200)
    with pytest.raises(MCPError) as info:
        call_tool(world.gw.mcp_url, token, f"{world.connector}__{DENIED}", {})
    assert info.value.code == -32004


def test_a_call_that_needs_approval_gets_an_approval_id(world: World, jit: dict[str, str]) -> None:
    gw = world.gw
    gw.api("PUT", f"/api/v1/connectors/{world.connector_id}/tools/echo/approval", 200,
           {"approver_group": jit["approvers"]})
    try:
        token = jit["token"]
        tools = {t.name: t for t in list_tools_direct(gw.mcp_url, token)}
        assert "Each call needs an approver's yes" in (tools[f"{world.connector}__echo"].description or "")
        with pytest.raises(MCPError) as first:
            call_tool(gw.mcp_url, token, f"{world.connector}__echo", {"message": "ship it"})
        assert first.value.code == -32005
        approval = first.value.data["approval_id"]
        # The same call again waits on the same approval; other arguments need another.
        with pytest.raises(MCPError) as again:
            call_tool(gw.mcp_url, token, f"{world.connector}__echo", {"message": "ship it"})
        assert again.value.data["approval_id"] == approval
        with pytest.raises(MCPError) as other:
            call_tool(gw.mcp_url, token, f"{world.connector}__echo", {"message": "something else"})
        assert other.value.data["approval_id"] != approval
        shown = gw.api("GET", f"/api/v1/approvals/{approval}", 200)
        assert shown["status"] == "pending"
        assert shown["tool"] == "echo" and shown["subject_name"] == "jit-person"
        assert "ship it" in shown["args_redacted"]
    finally:
        gw.api("PUT", f"/api/v1/connectors/{world.connector_id}/tools/echo/approval", 200,
               {"approver_group": None})
    # Cleared: echo runs again without approval.
    result = call_tool(gw.mcp_url, jit["token"], f"{world.connector}__echo", {"message": "free"})
    assert not result.is_error

"""Connectors seen by the official MCP Python SDK: one connector alone at ``/mcp/{connector}``,
resources and prompts of the reference server relayed under their own policy, the catalog of the
first discovery, and risk rules — all against the real binary and ``server-everything``."""

from __future__ import annotations

import pytest
from mcp import MCPError

from conftest import ALLOWED, World
from helpers import call_tool, dump, list_tools_direct, with_session

DOCS = "demo://resource/static/document/*"


@pytest.fixture(scope="module")
def reader(world: World) -> str:
    """A person whose group may read the static documents and get prompts named simple-*."""
    gw = world.gw
    uid = gw.api("POST", "/api/v1/users", 201, {"user_name": "connectors-reader", "display_name": "Connectors Reader"})["id"]
    token = gw.api("POST", f"/api/v1/users/{uid}/tokens", 201, {"name": "sdk"})["token"]
    gid = gw.api("POST", "/api/v1/groups", 201, {"display_name": "connectors-readers"})["id"]
    gw.api("PUT", f"/api/v1/groups/{gid}/policies/{world.connector_id}", 200,
           {"allow": ["echo"], "resources": [DOCS], "prompts": ["simple-*"]})
    gw.api("PUT", f"/api/v1/groups/{gid}/members/{uid}", 204)
    return token


def one_connector_url(world: World) -> str:
    return f"{world.gw.base}/mcp/{world.connector}"


def test_one_connector_alone_keeps_the_upstreams_names(world: World) -> None:
    names = sorted(t.name for t in list_tools_direct(one_connector_url(world), world.tokens["alice"]))
    assert names == sorted(ALLOWED)
    direct = call_tool(world.upstream.url, None, "echo", {"message": "alone"})
    via = call_tool(one_connector_url(world), world.tokens["alice"], "echo", {"message": "alone"})
    assert dump(via) == dump(direct)
    with pytest.raises(MCPError) as info:
        call_tool(one_connector_url(world), world.tokens["alice"], "get-env", {})
    assert "not permitted" in info.value.message


def test_the_first_discovery_is_the_approved_catalog(world: World) -> None:
    tools = world.gw.api("GET", f"/api/v1/connectors/{world.connector_id}/tools", 200)
    by_name = {t["name"]: t for t in tools}
    assert set(by_name) == set(world.upstream.tools)
    assert all(t["review"] == "approved" for t in tools)
    # The suggestion reads the name: get-env (the process environment, where secrets live) is
    # High, echo Low.
    assert by_name["get-env"]["risk"] == "high"
    assert by_name["echo"]["risk"] == "low"
    assert all(t["risk_reason"] for t in tools)


def test_resources_are_relayed_under_their_own_rules(world: World, reader: str) -> None:
    async def listing(s):
        return (await s.list_resources()).resources

    upstream = with_session(world.upstream.url, None, listing)
    docs = [r for r in upstream if r.uri.startswith("demo://resource/static/document/")]
    assert docs, "server-everything offers static documents"
    relayed = with_session(world.gw.mcp_url, reader, listing)
    assert sorted(str(r.uri) for r in relayed) == sorted(f"everything+{r.uri}" for r in docs)
    # Reading through the gateway gives the upstream's text.
    uri = str(docs[0].uri)
    direct = with_session(world.upstream.url, None, lambda s: s.read_resource(uri))
    via = with_session(world.gw.mcp_url, reader, lambda s: s.read_resource(f"everything+{uri}"))
    assert via.contents[0].text == direct.contents[0].text
    # Alone at /mcp/everything the URI is the upstream's own.
    alone = with_session(one_connector_url(world), reader, lambda s: s.read_resource(uri))
    assert str(alone.contents[0].uri) == uri
    # Someone without resource rules sees none and reads none.
    assert with_session(world.gw.mcp_url, world.tokens["alice"], listing) == []
    with pytest.raises(MCPError) as info:
        with_session(world.gw.mcp_url, world.tokens["alice"], lambda s: s.read_resource(f"everything+{uri}"))
    assert "not permitted" in info.value.message


def test_prompts_are_relayed_under_their_own_rules(world: World, reader: str) -> None:
    async def names(s):
        return sorted(p.name for p in (await s.list_prompts()).prompts)

    upstream = with_session(world.upstream.url, None, names)
    assert "simple-prompt" in upstream and "args-prompt" in upstream
    assert with_session(world.gw.mcp_url, reader, names) == ["everything__simple-prompt"]
    direct = with_session(world.upstream.url, None, lambda s: s.get_prompt("simple-prompt"))
    via = with_session(world.gw.mcp_url, reader, lambda s: s.get_prompt("everything__simple-prompt"))
    assert via.messages == direct.messages
    with pytest.raises(MCPError):
        with_session(world.gw.mcp_url, reader, lambda s: s.get_prompt("everything__args-prompt", {"city": "x"}))


def test_a_risk_ceiling_allows_by_level(world: World) -> None:
    gw = world.gw
    uid = gw.api("POST", "/api/v1/users", 201, {"user_name": "connectors-lowrisk", "display_name": "Connectors Lowrisk"})["id"]
    token = gw.api("POST", f"/api/v1/users/{uid}/tokens", 201, {"name": "sdk"})["token"]
    gid = gw.api("POST", "/api/v1/groups", 201, {"display_name": "connectors-low-risk"})["id"]
    gw.api("PUT", f"/api/v1/groups/{gid}/policies/{world.connector_id}", 200, {"allow_risk": "low"})
    gw.api("PUT", f"/api/v1/groups/{gid}/members/{uid}", 204)
    catalog = gw.api("GET", f"/api/v1/connectors/{world.connector_id}/tools", 200)
    low = sorted(f"everything__{t['name']}" for t in catalog if t["risk"] == "low")
    assert low, "some tool of server-everything is Low"
    names = sorted(t.name for t in list_tools_direct(gw.mcp_url, token))
    assert names == low
    sim = gw.api("GET", "/api/v1/policy/simulate?user=connectors-lowrisk", 200)
    decided = {t["tool"]: t for t in sim["connectors"][0]["tools"]}
    assert all("risk <= Low" in decided[n.removeprefix("everything__")]["rule"] for n in low)

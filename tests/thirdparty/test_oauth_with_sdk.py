"""Toolgate as an OAuth authorization server for MCP clients, seen by third-party code: the official
MCP Python SDK's OAuth client (``mcp.client.auth``) connects to ``/mcp``, discovers the metadata,
gets a client id (once from a client ID metadata document served by the test, once by dynamic
client registration), sends a person to sign in through the test OpenID Provider (``oidc-provider``
from npm) and Toolgate's consent page, then lists and calls tools; the audit log names the client.

The person at the browser is scripted (``helpers.Person``): it follows every redirect by hand with
one cookie jar, posts the IdP's login form and the consent form, and stops at the redirect to the
client's loopback redirect URI, where nothing listens. The metadata documents are also checked
field by field (RFC 8414, RFC 9728) and the 401 challenge with plain HTTP.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import OAuthMetadata, OAuthToken, ProtectedResourceMetadata
from mcp.types import CallToolResult

from conftest import ALLOWED, Idp, IdpAccount, World, free_port
from helpers import Authorization, MemoryTokenStorage, Person, oauth_client, with_session

SCOPES = {"mcp:read", "mcp:tools"}
OAUTH_SWITCHES = ("preregistered_enabled", "cimd_enabled", "dcr_enabled", "allow_loopback_cimd")
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw-http", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

# The hops of a first authorization, in order (others may come between them): Toolgate sends the
# person to the IdP, the IdP back to Toolgate, Toolgate on to its consent page, and the consent
# form's answer to the client.
FIRST_SIGN_IN = [
    "GET gw /oauth/authorize",
    "GET gw /auth/oidc/login",
    "GET idp /auth",
    "POST idp /interaction/",
    "GET gw /auth/oidc/callback",
    "GET gw /oauth/consent",
    "POST gw /oauth/consent",
]


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def signer(world: World, sso: Idp) -> IdpAccount:
    """A person provisioned in Toolgate (userName = the IdP account's preferred_username), in a
    group that may use the tools of ``ALLOWED`` on the connector."""
    gw, account = world.gw, sso.accounts["olivia"]
    uid = gw.api("POST", "/api/v1/users", 201, {"user_name": account.user_name, "display_name": account.name})["id"]
    gid = gw.api("POST", "/api/v1/groups", 201, {"display_name": "oauth-sdk-people"})["id"]
    gw.api("PUT", f"/api/v1/groups/{gid}/policies/{world.connector_id}", 200, {"allow": ALLOWED, "block": []})
    gw.api("PUT", f"/api/v1/groups/{gid}/members/{uid}", 204)
    return account


@pytest.fixture
def loopback_cimd(world: World) -> Iterator[None]:
    """Toolgate's dev mode for the length of one test: client ID metadata documents may be served
    over http from 127.0.0.1 (the production rule is https on a public address)."""
    before = world.gw.api("GET", "/api/v1/settings/oauth", 200)
    switches = {name: before[name] for name in OAUTH_SWITCHES}
    assert switches["cimd_enabled"] is True, before
    saved = world.gw.api("PUT", "/api/v1/settings/oauth", 200, {**switches, "allow_loopback_cimd": True})
    assert saved["allow_loopback_cimd"] is True, saved
    yield
    world.gw.api("PUT", "/api/v1/settings/oauth", 200, switches)


@dataclass
class ClientDocument:
    """A client ID metadata document served by the test, and who fetched it."""

    url: str
    doc: dict[str, Any]
    fetches: list[dict[str, str]] = field(default_factory=list)  # request headers of each GET


@pytest.fixture
def client_document() -> Iterator[ClientDocument]:
    """Serves a client's metadata document from a small HTTP server on 127.0.0.1; its client_id is
    its own URL, exactly (the CIMD rule)."""
    path = "/clients/toolgate-sdk-test.json"
    served: ClientDocument | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != path or served is None:
                self.send_error(404)
                return
            served.fetches.append(dict(self.headers))
            body = json.dumps(served.doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_port}{path}"
    served = ClientDocument(url=url, doc={
        "client_id": url,
        "client_name": f"SDK test client (CIMD) {uuid.uuid4().hex[:6]}",
        "redirect_uris": [loopback_redirect_uri()],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    })
    thread = threading.Thread(target=server.serve_forever, name="cimd-document", daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------------------------
# helpers


def loopback_redirect_uri() -> str:
    """A native client's redirect URI (RFC 8252): the browser is stopped before it gets there."""
    return f"http://127.0.0.1:{free_port()}/callback"


def person_for(account: IdpAccount, redirect_uri: str, decision: str = "allow") -> Person:
    return Person(account.login, account.password, redirect_uri=redirect_uri, decision=decision)


def www_authenticate(header: str) -> tuple[str, dict[str, str]]:
    """The scheme and the auth-params of one challenge (RFC 9110 §11.6.1)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v if v else u for k, v, u in re.findall(r'([\w-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)}
    return scheme, params


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT's header and claims, unverified (only Toolgate can check the HS256 signature)."""
    parts = token.split(".")
    assert len(parts) == 3, f"the access token is not a JWS compact JWT: {token[:40]}..."

    def decode(s: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))

    return decode(parts[0]), decode(parts[1])


@dataclass
class Used:
    """What an SDK session did: the tools it saw and the echo it got back."""

    tools: list[str]
    echo: CallToolResult


def use_tools(world: World, client: OAuthClientProvider, marker: str) -> Used:
    """One SDK session through `client`: lists the tools and calls echo with `marker`."""

    async def run(s: ClientSession) -> Used:
        tools = (await s.list_tools()).tools
        echo = await s.call_tool(f"{world.connector}__echo", {"message": marker})
        return Used(tools=sorted(t.name for t in tools), echo=echo)

    return with_session(world.gw.mcp_url, None, run, auth=client)


def tool_names(url: str, client: OAuthClientProvider) -> list[str]:
    async def run(s: ClientSession) -> list[str]:
        return sorted(t.name for t in (await s.list_tools()).tools)

    return with_session(url, None, run, auth=client)


def assert_hops_in_order(auth: Authorization, expected: list[str]) -> None:
    """Each expected hop (a prefix of `METHOD gw|idp path`) occurs, in this order."""
    steps = auth.steps()
    at = 0
    for want in expected:
        found = next((i for i in range(at, len(steps)) if steps[i].startswith(want)), None)
        assert found is not None, f"hop {want!r} missing after {steps[at - 1] if at else 'the start'!r}\n{auth.describe()}"
        at = found + 1


def assert_first_sign_in(world: World, auth: Authorization, client_id: str, client_name: str) -> None:
    """A first authorization: the request the SDK made, every hop, the consent page, the answer."""
    issuer = world.gw.base
    request = auth.request
    assert urlsplit(auth.url)._replace(query="").geturl() == f"{issuer}/oauth/authorize", auth.url
    assert request["response_type"] == "code"
    assert request["client_id"] == client_id
    assert request["code_challenge_method"] == "S256" and request["code_challenge"]
    assert request["resource"] == f"{issuer}/mcp", "the SDK sends the resource named by the PRM (RFC 8707)"
    assert set(request["scope"].split()) >= SCOPES, f"the SDK asks the scope of the challenge: {request['scope']}"

    assert auth.login_shown, f"the IdP never asked for the password\n{auth.describe()}"
    assert_hops_in_order(auth, FIRST_SIGN_IN)
    assert auth.steps()[-1] == "POST gw /oauth/consent", f"the consent answer must go to the client\n{auth.describe()}"

    assert auth.consent is not None
    assert client_name in auth.consent.texts["consent-client"], auth.consent.texts
    assert "127.0.0.1" in auth.consent.texts.get("consent-redirect-host", ""), auth.consent.texts
    # Every redirect URI of these clients is loopback: the page says that it goes to this computer.
    assert "consent-localhost-warning" in auth.consent.texts, auth.consent.texts

    response = auth.response
    assert response.get("code"), response
    assert response.get("state") == request["state"], response
    assert response.get("iss") == issuer, f"RFC 9207 iss: {response}"


def assert_tokens(world: World, tokens: OAuthToken | None, client_id: str) -> None:
    """The access token is Toolgate's short-lived JWT for the /mcp audience; a refresh token came too."""
    issuer = world.gw.base
    assert tokens is not None, "the SDK stored no tokens"
    header, claims = jwt_parts(tokens.access_token)
    assert header.get("typ", "").lower() == "at+jwt" and header.get("alg") == "HS256", header
    assert claims["iss"] == issuer, claims
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert aud == [f"{issuer}/mcp"], claims
    assert claims["client_id"] == client_id, claims
    assert claims["sub"], claims
    assert set(claims["scope"].split()) == SCOPES, claims
    assert 0 < claims["exp"] - claims["iat"] <= 600, claims
    assert tokens.expires_in is not None and 0 < tokens.expires_in <= 600, tokens
    assert tokens.refresh_token and tokens.refresh_token.startswith("tgr_"), tokens


def assert_used_tools(world: World, used: Used, marker: str) -> None:
    assert used.tools == sorted(f"{world.connector}__{t}" for t in ALLOWED)
    assert used.echo.is_error is not True, used.echo
    assert [c.model_dump(exclude_none=True) for c in used.echo.content] == [{"type": "text", "text": f"Echo: {marker}"}]


def assert_audited(world: World, marker: str, account: IdpAccount, client_id: str) -> None:
    """The call is in the audit log as the person's, made through this OAuth client."""
    query = urlencode({"kind": "tool_call", "q": marker})
    items = world.gw.api("GET", f"/api/v1/audit?{query}", 200)["items"]
    assert len(items) == 1, items
    e = items[0]
    assert (e["principal"], e["connector"], e["tool"]) == (account.user_name, world.connector, "echo"), e
    assert (e["decision"], e["outcome"]) == ("allow", "ok"), e
    assert e["client_id"] == client_id, e
    assert e["subject_kind"] == "person", e


def assert_client_listed(world: World, client_id: str) -> None:
    listing = world.gw.api("GET", "/api/v1/oauth/clients", 200)
    assert client_id in json.dumps(listing), f"{client_id} is not among the OAuth clients: {listing}"


# --------------------------------------------------------------------------------------------
# discovery


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-real-token"], ids=["no-token", "invalid-token"]
)
def test_a_request_without_a_valid_token_is_challenged_with_the_resource_metadata(
    world: World, authorization: str | None
) -> None:
    issuer = world.gw.base
    headers = dict(MCP_HEADERS)
    if authorization:
        headers["Authorization"] = authorization
    r = httpx2.post(world.gw.mcp_url, json=INIT, headers=headers, timeout=30)
    assert r.status_code == 401, r.text
    scheme, params = www_authenticate(r.headers.get("www-authenticate", ""))
    assert scheme.lower() == "bearer", r.headers
    assert params.get("resource_metadata") == f"{issuer}/.well-known/oauth-protected-resource/mcp", params
    assert set(params.get("scope", "").split()) == SCOPES, params
    if authorization:
        assert params.get("error") == "invalid_token", params
    else:
        assert "error" not in params, f"no error code when no token was sent (RFC 6750 §3.1): {params}"
    # The URL it names serves this resource's metadata.
    prm = httpx2.get(params["resource_metadata"], timeout=30)
    assert prm.status_code == 200 and prm.json()["resource"] == f"{issuer}/mcp", prm.text


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]
)
def test_protected_resource_metadata_names_the_gateway_as_authorization_server(world: World, path: str) -> None:
    issuer = world.gw.base
    r = httpx2.get(f"{issuer}{path}", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    m = r.json()
    assert m["resource"] == f"{issuer}/mcp", m
    assert m["authorization_servers"] == [issuer], m
    assert set(m["scopes_supported"]) >= SCOPES, m
    assert m["bearer_methods_supported"] == ["header"], m
    assert isinstance(m["resource_name"], str) and m["resource_name"], m
    # The SDK's own model reads it, and renders the server as the issuer string it will compare.
    prm = ProtectedResourceMetadata.model_validate(m)
    assert [str(s) for s in prm.authorization_servers] == [issuer]


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"])
def test_authorization_server_metadata_is_complete(world: World, path: str) -> None:
    issuer = world.gw.base
    r = httpx2.get(f"{issuer}{path}", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    m = r.json()
    # RFC 8414 §3.3: the issuer is the URL base the document was fetched from, exactly.
    assert m["issuer"] == issuer, m
    endpoints = {
        "authorization_endpoint": "/oauth/authorize",
        "token_endpoint": "/oauth/token",
        "registration_endpoint": "/oauth/register",
        "revocation_endpoint": "/oauth/revoke",
    }
    for name, endpoint_path in endpoints.items():
        url = urlsplit(m[name])
        assert url.scheme in ("http", "https") and url.netloc, f"{name} is not absolute: {m[name]}"
        assert m[name] == f"{issuer}{endpoint_path}", m
    assert m["response_types_supported"] == ["code"], m
    assert m["response_modes_supported"] == ["query"], m
    assert set(m["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}, m
    auth_methods = {"none", "client_secret_basic", "client_secret_post"}
    assert set(m["token_endpoint_auth_methods_supported"]) == auth_methods, m
    assert set(m["revocation_endpoint_auth_methods_supported"]) == auth_methods, m
    assert m["code_challenge_methods_supported"] == ["S256"], m
    assert m["client_id_metadata_document_supported"] is True, m
    assert m["authorization_response_iss_parameter_supported"] is True, m
    assert set(m["scopes_supported"]) >= SCOPES, m
    # The SDK's own model reads it; the issuer it compares is the same string.
    assert str(OAuthMetadata.model_validate(m).issuer) == issuer


# --------------------------------------------------------------------------------------------
# the SDK signs in


def test_the_sdk_signs_in_with_a_client_id_metadata_document(
    world: World, signer: IdpAccount, loopback_cimd: None, client_document: ClientDocument
) -> None:
    doc, url = client_document.doc, client_document.url
    person = person_for(signer, doc["redirect_uris"][0])
    storage = MemoryTokenStorage()
    marker = f"oauth-cimd-{uuid.uuid4()}"

    def client() -> OAuthClientProvider:
        return oauth_client(world.gw.mcp_url, client_name=doc["client_name"], person=person, storage=storage,
                            client_metadata_url=url)

    used = use_tools(world, client(), marker)

    # The SDK used the document's URL as its client id (no registration), and Toolgate read it.
    assert storage.client_info is not None and storage.client_info.client_id == url, storage.client_info
    assert client_document.fetches, "Toolgate never fetched the client metadata document"
    assert len(person.authorizations) == 1, [a.describe() for a in person.authorizations]
    assert_first_sign_in(world, person.authorizations[0], client_id=url, client_name=doc["client_name"])
    assert_tokens(world, storage.tokens, client_id=url)
    assert_used_tools(world, used, marker)
    assert_audited(world, marker, signer, client_id=url)
    assert_client_listed(world, url)

    # An agent restarting with the tokens it stored: no browser, also for one connector alone
    # (the same audience serves /mcp/{connector}, under the upstream's own tool names).
    assert tool_names(world.gw.mcp_url, client()) == used.tools
    assert tool_names(f"{world.gw.base}/mcp/{world.connector}", client()) == sorted(ALLOWED)
    assert len(person.authorizations) == 1, person.authorizations[-1].describe()

    # Without tokens, in the same browser: signed in at Toolgate and consented before, so the
    # person goes straight back to the client with a code (no IdP, no consent page).
    storage.tokens = None
    assert tool_names(world.gw.mcp_url, client()) == used.tools
    assert len(person.authorizations) == 2
    again = person.authorizations[1]
    assert not again.login_shown and again.consent is None, again.describe()
    assert again.steps() == ["GET gw /oauth/authorize"], again.describe()
    assert again.response.get("code") and again.response.get("iss") == world.gw.base, again.response


def test_the_sdk_registers_dynamically_and_signs_in(world: World, signer: IdpAccount) -> None:
    person = person_for(signer, loopback_redirect_uri())
    storage = MemoryTokenStorage()
    name = f"SDK test client (DCR) {uuid.uuid4().hex[:6]}"
    marker = f"oauth-dcr-{uuid.uuid4()}"

    used = use_tools(world, oauth_client(world.gw.mcp_url, client_name=name, person=person, storage=storage), marker)

    # The SDK registered (RFC 7591) as the public client it asked to be.
    info = storage.client_info
    assert info is not None and info.client_id, info
    assert info.client_secret is None and info.token_endpoint_auth_method == "none", info
    assert [str(u) for u in info.redirect_uris or []] == [person.redirect_uri], info
    assert len(person.authorizations) == 1, [a.describe() for a in person.authorizations]
    assert_first_sign_in(world, person.authorizations[0], client_id=info.client_id, client_name=name)
    assert_tokens(world, storage.tokens, client_id=info.client_id)
    assert_used_tools(world, used, marker)
    assert_audited(world, marker, signer, client_id=info.client_id)
    assert_client_listed(world, info.client_id)


def test_a_person_who_denies_consent_sends_the_client_access_denied(world: World, signer: IdpAccount) -> None:
    person = person_for(signer, loopback_redirect_uri(), decision="deny")
    client = oauth_client(world.gw.mcp_url, client_name="SDK test client (denied)", person=person,
                          storage=MemoryTokenStorage())
    # Without a code the SDK cannot finish; how it reports that (our callback's error, or the
    # transport's MCPError) is the SDK's business. What the client was sent is checked below.
    with pytest.raises(Exception):  # noqa: B017
        tool_names(world.gw.mcp_url, client)
    assert len(person.authorizations) == 1
    auth = person.authorizations[0]
    assert auth.consent is not None, auth.describe()
    assert auth.steps()[-1] == "POST gw /oauth/consent", auth.describe()
    assert auth.response.get("error") == "access_denied", auth.response
    assert "code" not in auth.response, auth.response
    assert auth.response.get("state") == auth.request["state"], auth.response
    assert auth.response.get("iss") == world.gw.base, auth.response

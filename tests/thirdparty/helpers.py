"""The official MCP Python SDK as an agent would use it: streamable HTTP, optional bearer token,
or the SDK's own OAuth client (``mcp.client.auth``) with a scripted person at the browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urljoin, urlsplit

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.types import CallToolResult, PaginatedRequestParams, Tool
from pydantic import AnyUrl

T = TypeVar("T")

CALL_TIMEOUT_S = 60


@asynccontextmanager
async def mcp_session(
    url: str, token: str | None = None, *, auth: httpx2.Auth | None = None
) -> AsyncIterator[ClientSession]:
    """An initialized SDK session to `url`, sending `Authorization: Bearer <token>` when given, or
    authenticated by `auth` (e.g. the SDK's `OAuthClientProvider`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # The SDK takes headers and auth through the httpx2 client it is given (mcp 2.x).
    async with httpx2.AsyncClient(
        headers=headers, auth=auth, timeout=httpx2.Timeout(30, read=CALL_TIMEOUT_S)
    ) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(CALL_TIMEOUT_S):
                    await session.initialize()
                yield session


def with_session(
    url: str,
    token: str | None,
    fn: Callable[[ClientSession], Awaitable[T]],
    *,
    auth: httpx2.Auth | None = None,
) -> T:
    """Runs `fn(session)` in a fresh SDK session and returns its result (sync, for plain tests)."""

    async def main() -> T:
        async with mcp_session(url, token, auth=auth) as s:
            with anyio.fail_after(CALL_TIMEOUT_S):
                return await fn(s)

    try:
        return anyio.run(main)
    except BaseExceptionGroup as group:
        # The SDK runs inside task groups, which wrap an error in (nested) exception groups; a
        # test wants the error itself (e.g. the MCPError a refused call gets).
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from group
        raise


def _leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in _leaves(sub)]
    return [e]


async def _all_tools(s: ClientSession) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    while True:
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await s.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def list_tools_direct(url: str, token: str | None = None) -> list[Tool]:
    return with_session(url, token, _all_tools)


def call_tool(url: str, token: str | None, name: str, arguments: dict[str, Any]) -> CallToolResult:
    return with_session(url, token, lambda s: s.call_tool(name, arguments))


def dump(result: CallToolResult) -> dict[str, Any]:
    """A result as it went over the wire (camelCase, without unset fields)."""
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------------------------
# OAuth: the SDK's OAuth client, and the person at the browser it sends to sign in


class MemoryTokenStorage:
    """The SDK's `TokenStorage`, in memory, so a test can read what the SDK kept (and hand the same
    tokens and registration to a second client, like an agent restarting)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def oauth_client(
    server_url: str,
    *,
    client_name: str,
    person: Person,
    storage: MemoryTokenStorage,
    client_metadata_url: str | None = None,
) -> OAuthClientProvider:
    """The SDK's OAuth client for `server_url`: a public client (no secret) redirecting to the
    person's loopback redirect URI. With `client_metadata_url` it uses that URL as its client id
    (CIMD) when the server supports it; without, it registers dynamically (DCR)."""
    provider = OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata(
            client_name=client_name,
            redirect_uris=[AnyUrl(person.redirect_uri)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
    )
    if client_metadata_url is not None:
        # The SDK's constructor accepts only https metadata URLs (the CIMD rule for production);
        # the tests serve the document over loopback http, which Toolgate accepts only with
        # `allow_loopback_cimd`. Setting the field after the check leaves the SDK's own choice
        # between CIMD and DCR (`should_use_client_metadata_url`) exactly as it is.
        provider.context.client_metadata_url = client_metadata_url
    return provider


REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@dataclass
class Hop:
    """One request the browser made, and where it was sent next."""

    method: str
    url: str
    status: int
    location: str | None = None

    def __str__(self) -> str:
        s = f"{self.method} {_short(self.url)} -> {self.status}"
        return f"{s} {_short(self.location)}" if self.location else s


def _short(url: str, limit: int = 160) -> str:
    return url if len(url) <= limit else url[:limit] + "..."


class _HtmlReader(HTMLParser):
    """Just enough HTML: each form's action, method and named fields; each element's text by id."""

    VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.texts: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []
        self._form: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._form)
        elif self._form is not None and tag in ("input", "button") and a.get("name"):
            if tag == "button" or a.get("type") in ("submit", "button"):
                self._form.buttons.append((a["name"], a.get("value", ""), a.get("id", "")))
            else:
                self._form.fields[a["name"]] = a.get("value", "")
        if "id" in a:
            self.texts.setdefault(a["id"], "")
        if tag not in self.VOID:
            self._open.append((tag, a.get("id")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open:
            if element_id:
                self.texts[element_id] += data


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)  # named inputs (hidden, text, ...)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # (name, value, id)


@dataclass
class HtmlPage:
    """A page the browser stopped at."""

    url: str
    status: int
    headers: httpx2.Headers
    text: str
    forms: list[Form]
    texts: dict[str, str]  # element id -> its text, whitespace collapsed

    @classmethod
    def of(cls, response: httpx2.Response) -> HtmlPage:
        reader = _HtmlReader()
        if "html" in response.headers.get("content-type", ""):
            reader.feed(response.text)
        texts = {k: " ".join(v.split()) for k, v in reader.texts.items()}
        return cls(str(response.url), response.status_code, response.headers, response.text, reader.forms, texts)

    def form_with(self, field_name: str) -> Form | None:
        return next((f for f in self.forms if field_name in f.fields), None)


@dataclass
class Authorization:
    """One authorization request as the person's browser went through it."""

    url: str  # where the client sent the person
    trail: list[Hop] = field(default_factory=list)
    login_shown: bool = False  # the IdP asked for the password
    consent: HtmlPage | None = None  # Toolgate's consent page, when it was shown
    redirect: str | None = None  # where Toolgate finally sent the browser (never fetched)

    @property
    def request(self) -> dict[str, str]:
        """The authorization request's parameters, as the client sent them."""
        return dict(parse_qsl(urlsplit(self.url).query))

    @property
    def response(self) -> dict[str, str]:
        """The authorization response's parameters (code, state, iss or error)."""
        return dict(parse_qsl(urlsplit(self.redirect or "").query))

    def steps(self) -> list[str]:
        """The trail as `METHOD origin-kind path` ("gw" = Toolgate, "idp" = elsewhere)."""
        gw = _origin(self.url)
        return [f"{h.method} {'gw' if _origin(h.url) == gw else 'idp'} {urlsplit(h.url).path}" for h in self.trail]

    def describe(self) -> str:
        return "browser trail:\n  " + "\n  ".join(str(h) for h in self.trail)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class SignInFailed(AssertionError):
    """The scripted browser could not get through a hop; the message says which, with the trail."""


class Person:
    """Someone at a browser, as the SDK's `redirect_handler` / `callback_handler` pair sees them:
    follows the authorization URL hop by hop (redirects by hand, one cookie jar across the
    gateway and the IdP, like a real browser), types `login` / `password` into the test IdP's
    form, answers Toolgate's consent page with `decision`, and stops at the redirect to the
    client's `redirect_uri` without fetching it (nothing listens there)."""

    MAX_PAGES = 4  # the IdP's login page and the consent page, with room for one surprise

    def __init__(self, login: str, password: str, *, redirect_uri: str, decision: str = "allow") -> None:
        self.login = login
        self.password = password
        self.redirect_uri = redirect_uri
        self.decision = decision
        self.jar = CookieJar()  # shared by every request, whichever event loop runs it
        self.authorizations: list[Authorization] = []

    async def redirect_handler(self, authorization_url: str) -> None:
        self.authorizations.append(await self.authorize(authorization_url))

    async def callback_handler(self) -> AuthorizationCodeResult:
        auth = self.authorizations[-1]
        params = auth.response
        if "code" not in params:
            raise SignInFailed(f"the client got no code: {params}\n{auth.describe()}")
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    async def authorize(self, authorization_url: str) -> Authorization:
        """Goes through one authorization request; returns what happened on the way."""
        auth = Authorization(url=authorization_url)
        gateway = _origin(authorization_url)
        async with httpx2.AsyncClient(cookies=self.jar, follow_redirects=False, timeout=30) as http:
            response = await self._follow(http, auth, "GET", authorization_url)
            for _ in range(self.MAX_PAGES):
                if auth.redirect is not None:
                    return auth
                page = HtmlPage.of(response)
                path = urlsplit(page.url).path
                if path.startswith("/interaction/"):
                    response = await self._sign_in(http, auth, page)
                elif _origin(page.url) == gateway and path == "/oauth/consent":
                    response = await self._answer_consent(http, auth, page, gateway)
                elif _origin(page.url) == gateway and path == "/login":
                    raise SignInFailed(
                        f"Toolgate sent the browser to its own login page ({urlsplit(page.url).query or 'no error'})"
                        f" instead of on to the client\n{auth.describe()}"
                    )
                else:
                    raise SignInFailed(
                        f"unexpected page {page.status} {page.url}:\n{page.text[:800]}\n{auth.describe()}"
                    )
        raise SignInFailed(f"no redirect to {self.redirect_uri} after {self.MAX_PAGES} pages\n{auth.describe()}")

    async def _sign_in(self, http: httpx2.AsyncClient, auth: Authorization, page: HtmlPage) -> httpx2.Response:
        """The test IdP's login page: post the login form."""
        if auth.login_shown:
            error = re.search(r'class="error"[^>]*>([^<]*)<', page.text)
            said = error.group(1) if error else "no error shown"
            raise SignInFailed(f"the IdP showed its login page again ({said})\n{auth.describe()}")
        form = page.form_with("login")
        if page.status != 200 or form is None or form.method != "post":
            raise SignInFailed(f"the IdP's page {page.url} has no login form:\n{page.text[:800]}\n{auth.describe()}")
        auth.login_shown = True
        return await self._follow(
            http, auth, "POST", urljoin(page.url, form.action),
            data={"login": self.login, "password": self.password}, headers={"Origin": _origin(page.url)},
        )

    async def _answer_consent(
        self, http: httpx2.AsyncClient, auth: Authorization, page: HtmlPage, gateway: str
    ) -> httpx2.Response:
        """Toolgate's consent page: checked as the contract describes it, then answered."""
        where = f"consent page {page.url}"
        if auth.consent is not None:
            raise SignInFailed(f"the consent page came twice\n{auth.describe()}")
        auth.consent = page
        if page.status != 200:
            raise SignInFailed(f"{where} answered {page.status}:\n{page.text[:800]}\n{auth.describe()}")
        csp = page.headers.get("content-security-policy", "")
        if "frame-ancestors 'none'" not in csp.lower():
            raise SignInFailed(f"{where}: Content-Security-Policy lacks frame-ancestors 'none': {csp!r}")
        if page.headers.get("x-frame-options", "").upper() != "DENY":
            raise SignInFailed(f"{where}: X-Frame-Options is {page.headers.get('x-frame-options')!r}, not DENY")
        form = page.form_with("request")
        if form is None or "csrf" not in form.fields:
            raise SignInFailed(f"{where}: no form with hidden request and csrf fields:\n{page.text[:1500]}")
        action = urljoin(page.url, form.action or page.url)
        if form.method != "post" or urlsplit(action)._replace(query="").geturl() != f"{gateway}/oauth/consent":
            raise SignInFailed(f"{where}: the form must POST to {gateway}/oauth/consent, not {form.method} {action}")
        decisions = {(name, value) for name, value, _ in form.buttons}
        if not {("decision", "allow"), ("decision", "deny")} <= decisions:
            raise SignInFailed(f"{where}: buttons decision=allow and decision=deny expected, found {form.buttons}")
        if not page.texts.get("consent-client"):
            raise SignInFailed(f"{where}: #consent-client (the client's name) is missing or empty")
        data = {"request": form.fields["request"], "csrf": form.fields["csrf"], "decision": self.decision}
        return await self._follow(http, auth, "POST", action, data=data, headers={"Origin": gateway})

    async def _follow(
        self,
        http: httpx2.AsyncClient,
        auth: Authorization,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx2.Response:
        """Sends one request and follows its redirects like a browser; stops (without fetching it)
        at a redirect to the client's redirect URI."""
        for _ in range(20):
            try:
                response = await http.request(method, url, data=data, headers=headers)
            except httpx2.HTTPError as e:
                raise SignInFailed(f"{method} {url} failed: {e!r}\n{auth.describe()}") from e
            location = response.headers.get("location")
            target = urljoin(url, location) if location else None
            auth.trail.append(Hop(method, url, response.status_code, target))
            if response.status_code not in REDIRECT_STATUSES or target is None:
                return response
            if urlsplit(target)._replace(query="", fragment="").geturl() == self.redirect_uri:
                auth.redirect = target
                return response
            if response.status_code not in (307, 308):
                method, data = "GET", None
            headers = None
            url = target
        raise SignInFailed(f"more than 20 redirects\n{auth.describe()}")

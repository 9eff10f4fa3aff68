"""Fixtures for the third-party client suite.

One pytest session starts, in a fresh temporary folder and on free loopback ports:

* the reference MCP server ``@modelcontextprotocol/server-everything`` (streamable HTTP), taken
  from ``end2end/node_modules`` (installed by ``scripts/test-deps.sh``);
* the real ``toolgate`` binary (``target/debug/toolgate`` or ``$TOOLGATE_BIN``), migrated, with an
  admin API token made by its own CLI;
* when a test asks for it, the test OpenID Provider ``end2end/idp/idp.mjs`` (``oidc-provider``
  from npm), which the gateway then uses to sign people in.

Every process is ended at teardown. When a test fails, the tail of each process's log is added to
the failure report.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from helpers import list_tools_direct

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("TOOLGATE_BIN", REPO / "target" / "debug" / "toolgate"))
EVERYTHING = (
    REPO / "end2end" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)
IDP_ENTRY = REPO / "end2end" / "idp" / "idp.mjs"
READY_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 6000


# --------------------------------------------------------------------------------------------
# processes


@dataclass
class Proc:
    """A child process whose output goes to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:  # pragma: no cover - diagnostics only
            return f"<cannot read {self.log_path}: {e}>"
        return text[-chars:]

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with status {code}; see its log below ({self.log_path})")

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        # The child leads its own process group (start_new_session), so this reaches only it and
        # whatever it started itself.
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


RUNNING: list[Proc] = []
_SHOWN: dict[str, str] = {}  # process name -> log tail last added to a report
_ANY_FAILED = False


def start_proc(name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_dir: Path) -> Proc:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed when the process is gone
    popen = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    proc = Proc(name, popen, log_path)
    RUNNING.append(proc)
    return proc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, proc: Proc, probe: Callable[[], bool], timeout: float = READY_TIMEOUT_S) -> None:
    """Polls `probe` until it is true; fails early when the process dies, and after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        proc.check_alive()
        try:
            if probe():
                return
        except (OSError, httpx2.HTTPError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s; see its log below ({proc.log_path})")
        time.sleep(0.1)  # polling interval of a bounded loop, not a readiness guess


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):
    global _ANY_FAILED
    report = yield
    if report.failed:
        _ANY_FAILED = True
        for proc in RUNNING:
            tail = proc.log_tail()
            if _SHOWN.get(proc.name) == tail:
                tail = "(unchanged since the previous failure's report)"
            else:
                _SHOWN[proc.name] = tail
            report.sections.append((f"log of {proc.name} ({proc.log_path})", tail))
    return report


# --------------------------------------------------------------------------------------------
# the two servers


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="toolgate-thirdparty-"))
    yield d
    if _ANY_FAILED or os.environ.get("KEEP_TEST_DIR") == "1":
        print(f"\nkept the test folder with the servers' logs and database: {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Upstream:
    url: str
    proc: Proc
    tools: list[str]


@pytest.fixture(scope="session")
def upstream(workdir: Path) -> Iterator[Upstream]:
    if not EVERYTHING.is_file():
        pytest.exit(f"{EVERYTHING} is missing: run scripts/test-deps.sh first", returncode=2)
    node = shutil.which("node") or pytest.exit("node is not on PATH", returncode=2)
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    proc = start_proc("server-everything", [node, str(EVERYTHING), "streamableHttp"], env=env,
                      cwd=workdir, log_dir=workdir)
    try:
        wait_until("server-everything", proc, lambda: port_open(port))
        url = f"http://127.0.0.1:{port}/mcp"
        tools = [t.name for t in list_tools_direct(url)]
        yield Upstream(url=url, proc=proc, tools=tools)
    finally:
        proc.stop()


@dataclass
class Gateway:
    base: str
    env: dict[str, str]
    proc: Proc
    admin_token: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/mcp"

    def admin(self) -> httpx2.Client:
        return httpx2.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30
        )

    def api(self, method: str, path: str, expect: int, json: Any = None) -> Any:
        with self.admin() as c:
            r = c.request(method, path, json=json)
        assert r.status_code == expect, f"{method} {path} {json!r}: {r.status_code} {r.text}"
        return r.json() if r.content else None


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    r = subprocess.run([str(BINARY), *args], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"toolgate {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


@pytest.fixture(scope="session")
def gateway(workdir: Path) -> Iterator[Gateway]:
    if not BINARY.is_file():
        pytest.exit(f"{BINARY} is missing: build it first (cargo leptos build)", returncode=2)
    data = workdir / "toolgate"
    data.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "TOOLGATE_LISTEN": f"127.0.0.1:{port}",
        "TOOLGATE_DATABASE_URL": f"sqlite://{data}/tg.db",
        "TOOLGATE_DATA_DIR": str(data),
        # One gateway serves the whole suite from one address: OAuth flows and sign-ins of every
        # test would share the per-address budgets. The limits are tested in the Rust suite.
        "TOOLGATE_RATE_LIMIT_OAUTH_PER_MIN": "100000",
        "TOOLGATE_RATE_LIMIT_SIGNIN_PER_MIN": "100000",
        "RUST_LOG": os.environ.get("RUST_LOG", "info"),
    }
    run_cli(["migrate"], env, data)
    out = run_cli(["token", "create", "--name", "thirdparty-tests", "--role", "admin"], env, data)
    admin_token = out.strip().splitlines()[-1].strip()
    proc = start_proc("toolgate", [str(BINARY), "serve"], env=env, cwd=data, log_dir=workdir)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until("toolgate", proc, lambda: httpx2.get(f"{base}/readyz", timeout=2).status_code == 200)
        yield Gateway(base=base, env=env, proc=proc, admin_token=admin_token)
    finally:
        proc.stop()


# --------------------------------------------------------------------------------------------
# the directory: one connector, people, groups and policies


ALLOWED = ["echo", "get-sum"]  # what group "engineers" may use
DENIED = "get-env"  # a real upstream tool that "engineers" may not use


@dataclass
class World:
    gw: Gateway
    upstream: Upstream
    connector: str
    connector_id: str
    tokens: dict[str, str]  # user_name -> personal token


@pytest.fixture(scope="session")
def world(gateway: Gateway, upstream: Upstream) -> World:
    for name in [*ALLOWED, DENIED]:
        assert name in upstream.tools, f"server-everything has no tool {name!r}: {upstream.tools}"
    gw = gateway
    connector = gw.api("POST", "/api/v1/connectors", 201, {
        "name": "everything", "url": upstream.url, "transport": "streamable_http",
        "headers": {"X-Test": "1"},
    })

    def user(user_name: str) -> str:
        uid = gw.api("POST", "/api/v1/users", 201, {"user_name": user_name, "display_name": user_name.title()})["id"]
        tok = gw.api("POST", f"/api/v1/users/{uid}/tokens", 201, {"name": "sdk"})["token"]
        tokens[user_name] = tok
        return uid

    def group(display_name: str, allow: list[str], block: list[str], members: list[str]) -> None:
        gid = gw.api("POST", "/api/v1/groups", 201, {"display_name": display_name})["id"]
        gw.api("PUT", f"/api/v1/groups/{gid}/policies/{connector['id']}", 200, {"allow": allow, "block": block})
        for uid in members:
            gw.api("PUT", f"/api/v1/groups/{gid}/members/{uid}", 204)

    tokens: dict[str, str] = {}
    alice = user("alice")  # engineers: echo and get-sum only
    bob = user("bob")  # everything but get-env and trigger-*: allow "*" with blocks
    carol = user("carol")  # engineers, plus a group that blocks echo
    user("dave")  # in no group: sees nothing
    group("engineers", ALLOWED, [], [alice, carol])
    group("power-users", ["*"], [DENIED, "trigger-*"], [bob])
    group("no-echo", [], ["ech*"], [carol])
    return World(gw=gw, upstream=upstream, connector="everything", connector_id=connector["id"], tokens=tokens)


# --------------------------------------------------------------------------------------------
# signing people in: the test OpenID Provider, and the gateway configured to use it


@dataclass(frozen=True)
class IdpAccount:
    login: str
    password: str
    user_name: str  # the ID token's preferred_username: the Toolgate userName it signs in as
    name: str


IDP_ACCOUNTS = {
    "olivia": IdpAccount("olivia", "pw-olivia", "olivia@contoso.com", "Olivia"),
}


@dataclass
class Idp:
    issuer: str
    client_id: str
    client_secret: str
    accounts: dict[str, IdpAccount]
    proc: Proc


@pytest.fixture(scope="session")
def idp(workdir: Path, gateway: Gateway) -> Iterator[Idp]:
    """The test OpenID Provider, with one confidential client whose redirect URI is the gateway's
    OIDC callback, and the accounts of ``IDP_ACCOUNTS``."""
    if not (REPO / "end2end" / "node_modules" / "oidc-provider").is_dir():
        pytest.exit("end2end/node_modules/oidc-provider is missing: run scripts/test-deps.sh first", returncode=2)
    node = shutil.which("node") or pytest.exit("node is not on PATH", returncode=2)
    redirect_uri = gateway.api("GET", "/api/v1/settings/identity", 200)["redirect_uri"]
    assert redirect_uri == f"{gateway.base}/auth/oidc/callback"
    port = free_port()
    client_id, client_secret = "toolgate-thirdparty", secrets.token_urlsafe(24)
    accounts = [
        {"login": a.login, "password": a.password, "claims": {"preferred_username": a.user_name, "name": a.name}}
        for a in IDP_ACCOUNTS.values()
    ]
    env = {
        **os.environ,
        "IDP_PORT": str(port),
        "IDP_CLIENT_ID": client_id,
        "IDP_CLIENT_SECRET": client_secret,
        "IDP_REDIRECT_URI": redirect_uri,
        "IDP_ACCOUNTS": json.dumps(accounts),
        "IDP_DEBUG": "1",  # every request in its log, shown when a test fails
    }
    proc = start_proc("idp", [node, str(IDP_ENTRY)], env=env, cwd=workdir, log_dir=workdir)
    issuer = f"http://127.0.0.1:{port}"
    try:
        wait_until("test IdP", proc, lambda: f"IDP READY {issuer}" in proc.log_path.read_text(errors="replace"))
        yield Idp(issuer=issuer, client_id=client_id, client_secret=client_secret,
                  accounts=dict(IDP_ACCOUNTS), proc=proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def sso(gateway: Gateway, idp: Idp) -> Idp:
    """The gateway signs people in with the test IdP, matching them by userName =
    preferred_username; only provisioned people get in (no just-in-time creation)."""
    saved = gateway.api("PUT", "/api/v1/settings/identity", 200, {
        "oidc": {
            "issuer": idp.issuer,
            "client_id": idp.client_id,
            "client_secret": idp.client_secret,
            "display_name": "Contoso (test IdP)",
            "match_by": "user_name",
            "jit_provisioning": False,
            "use_groups_claim": False,
        },
        "role_mappings": {"admin": [], "approver": [], "auditor": []},
    })
    assert saved["oidc"]["issuer"] == idp.issuer and saved["oidc"]["client_secret_set"] is True, saved
    return idp

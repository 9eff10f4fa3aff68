"""Two ``toolgate serve`` processes on one PostgreSQL, and the official MCP Python SDK talking to
them through a transport that alternates every HTTP request between the two (a load balancer
without stickiness): the SDK's session, opened on one, is carried on by both; a change made on one
replica holds on the other within a second."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

from conftest import BINARY, Proc, Upstream, free_port, run_cli, start_proc, wait_until
from helpers import CALL_TIMEOUT_S

PG_URL = os.environ.get("TOOLGATE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


@dataclass
class Replica:
    base: str
    proc: Proc


@dataclass
class Pair:
    a: Replica
    b: Replica
    admin_token: str

    def api(self, replica: Replica, method: str, path: str, expect: int, json: object = None) -> object:
        with httpx2.Client(base_url=replica.base, timeout=30,
                           headers={"Authorization": f"Bearer {self.admin_token}"}) as c:
            r = c.request(method, path, json=json)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None


@pytest.fixture(scope="module")
def pair(workdir: Path) -> Iterator[Pair]:
    if os.environ.get("TOOLGATE_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("TOOLGATE_TEST_SKIP_POSTGRES=1")
    psql = shutil.which("psql") or pytest.fail("psql is not on PATH")
    schema = f"sdk_{uuid.uuid4().hex[:12]}"
    subprocess.run([psql, PG_URL, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE SCHEMA {schema}"],
                   check=True, capture_output=True, timeout=60)
    sep = "&" if "?" in PG_URL else "?"
    database_url = f"{PG_URL}{sep}options=-c%20search_path%3D{schema}"
    ports = [free_port(), free_port()]
    public = f"http://127.0.0.1:{ports[0]}"
    dirs = [workdir / "replica-a", workdir / "replica-b"]
    envs = []
    for port, data in zip(ports, dirs, strict=True):
        data.mkdir()
        envs.append({
            **os.environ,
            "TOOLGATE_LISTEN": f"127.0.0.1:{port}",
            "TOOLGATE_DATABASE_URL": database_url,
            "TOOLGATE_DATA_DIR": str(data),
            "TOOLGATE_PUBLIC_URL": public,
            "RUST_LOG": os.environ.get("RUST_LOG", "info"),
        })
    run_cli(["migrate"], envs[0], dirs[0])
    # Replicas share the master key (it seals secrets in the shared database).
    shutil.copy(dirs[0] / "master.key", dirs[1] / "master.key")
    out = run_cli(["token", "create", "--name", "replica-tests", "--role", "admin"], envs[0], dirs[0])
    admin_token = out.strip().splitlines()[-1].strip()
    replicas = []
    try:
        for name, env, data, port in zip(["toolgate-a", "toolgate-b"], envs, dirs, ports, strict=True):
            proc = start_proc(name, [str(BINARY), "serve"], env=env, cwd=data, log_dir=workdir)
            base = f"http://127.0.0.1:{port}"
            wait_until(name, proc, lambda b=base: httpx2.get(f"{b}/readyz", timeout=2).status_code == 200)
            replicas.append(Replica(base=base, proc=proc))
        yield Pair(a=replicas[0], b=replicas[1], admin_token=admin_token)
    finally:
        for r in replicas:
            r.proc.stop()


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends request n to port n mod 2, whatever session it belongs to; counts who got what."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.hits = [0 for _ in ports]
        self.sent = 0
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        i = self.sent % len(self.ports)
        self.sent += 1
        self.hits[i] += 1
        request.url = request.url.copy_with(port=self.ports[i])
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_the_sdk_session_is_carried_by_both_replicas(pair: Pair, upstream: Upstream) -> None:
    connector = pair.api(pair.a, "POST", "/api/v1/connectors", 201,
                         {"name": "everything", "url": upstream.url, "transport": "streamable_http"})
    uid = pair.api(pair.a, "POST", "/api/v1/users", 201, {"user_name": "riley", "display_name": "Riley"})["id"]
    token = pair.api(pair.a, "POST", f"/api/v1/users/{uid}/tokens", 201, {"name": "sdk"})["token"]
    gid = pair.api(pair.a, "POST", "/api/v1/groups", 201, {"display_name": "replicated"})["id"]
    pair.api(pair.a, "PUT", f"/api/v1/groups/{gid}/members/{uid}", 204)
    # The policy is set through B; the client's first requests go to A.
    pair.api(pair.b, "PUT", f"/api/v1/groups/{gid}/policies/{connector['id']}", 200, {"allow": ["echo"]})

    ports = [int(pair.a.base.rsplit(":", 1)[1]), int(pair.b.base.rsplit(":", 1)[1])]
    balancer = RoundRobin(ports)

    async def main() -> tuple[list[str], list[str], str]:
        async with httpx2.AsyncClient(
            transport=balancer, headers={"Authorization": f"Bearer {token}"},
            timeout=httpx2.Timeout(30, read=CALL_TIMEOUT_S),
        ) as http:
            async with streamable_http_client(f"{pair.a.base}/mcp", http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    with anyio.fail_after(CALL_TIMEOUT_S):
                        await session.initialize()
                        names = [t.name for t in (await session.list_tools()).tools]
                        texts = []
                        for i in range(6):
                            r = await session.call_tool("everything__echo", {"message": f"n{i}"})
                            assert not r.is_error, r
                            texts.append(r.content[0].text)
                        # Removed from the group through A: refused within a second, on
                        # whichever replica the next calls land.
                        pair.api(pair.a, "DELETE", f"/api/v1/groups/{gid}/members/{uid}", 204)
                        deadline = time.monotonic() + 1.0
                        refused = ""
                        while time.monotonic() < deadline:
                            try:
                                await session.call_tool("everything__echo", {"message": "late"})
                            except MCPError as e:
                                refused = e.error.message if hasattr(e, "error") else str(e)
                                break
                            await anyio.sleep(0.02)
                        return names, texts, refused

    names, texts, refused = anyio.run(main)
    assert names == ["everything__echo"]
    assert texts == [f"Echo: n{i}" for i in range(6)]
    assert refused, "a removed member was still served 1 s later"
    assert all(h >= 4 for h in balancer.hits), f"both replicas served the session: {balancer.hits}"

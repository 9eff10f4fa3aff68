#!/usr/bin/env python3
"""SCIM provisioning benchmark: an Entra-like initial cycle, then disables.

Starts a fresh `toolgate serve` on SQLite in a temporary directory, drives it over HTTP the way
the Microsoft Entra provisioning service does (look each object up by filter, then create it;
add group members with PATCH in batches; disable users with PATCH), with a fixed number of
requests in flight, and reports per phase: requests, wall time, throughput, p50/p99 latency and
errors. It then measures how long a SCIM disable takes to lock the user out of /mcp, checks the
result reads back correctly, stops the server and removes the temporary directory.

Usage: target/pyenv/bin/python bench/scim_bench.py [--users N] [--groups N] ... [--out FILE]
(see bench/README.md). Needs Python 3.11 and `httpx2` (the project's venv has it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

import httpx2

REPO = Path(__file__).resolve().parent.parent

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_JSON = "application/scim+json"
DENY_USERS = 20  # users measured in the disable-to-deny phase
DENY_POLL_LIMIT_S = 10.0  # give up waiting for the first 401 after this long
MAX_ERRORS_SHOWN = 5


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Stat:
    """Requests of one kind (or a whole phase): latencies and errors."""

    name: str
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0

    def ok(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def fail(self, seconds: float | None, what: str) -> None:
        if seconds is not None:
            self.latencies.append(seconds)
        self.errors += 1
        if len(self.first_errors) < MAX_ERRORS_SHOWN:
            self.first_errors.append(what)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def pct(self, p: float) -> float | None:
        if not self.latencies:
            return None
        s = sorted(self.latencies)
        k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))  # nearest rank
        return s[k] * 1000.0

    def trend(self) -> tuple[float, float] | None:
        """p50 of the first and of the last tenth of the requests (in completion order): how
        latency moves as the directory grows during the phase."""
        n = len(self.latencies) // 10
        if n < 10:
            return None
        first, last = self.latencies[:n], self.latencies[-n:]
        return statistics.median(first) * 1000.0, statistics.median(last) * 1000.0

    def row(self) -> dict[str, Any]:
        tr = self.trend()
        return {
            "phase": self.name,
            "requests": self.requests,
            "wall_s": round(self.wall, 3),
            "req_per_s": round(self.requests / self.wall, 1) if self.wall > 0 else None,
            "p50_ms": _r(self.pct(50)),
            "p99_ms": _r(self.pct(99)),
            "max_ms": _r(max(self.latencies) * 1000.0 if self.latencies else None),
            "errors": self.errors,
            "client_cpu_s": round(self.client_cpu, 2),
            "server_cpu_s": round(self.server_cpu, 2),
            "p50_first_tenth_ms": _r(tr[0]) if tr else None,
            "p50_last_tenth_ms": _r(tr[1]) if tr else None,
            "first_errors": self.first_errors,
        }


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


class Phase:
    """A phase: one aggregate Stat plus one Stat per request kind."""

    def __init__(self, name: str) -> None:
        self.total = Stat(name)
        self.kinds: dict[str, Stat] = {}

    def kind(self, k: str) -> Stat:
        if k not in self.kinds:
            self.kinds[k] = Stat(f"{self.total.name}: {k}")
        return self.kinds[k]

    def ok(self, k: str, s: float) -> None:
        self.total.ok(s)
        self.kind(k).ok(s)

    def fail(self, k: str, s: float | None, what: str) -> None:
        self.total.fail(s, what)
        self.kind(k).fail(s, what)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0 when unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


# ---------------------------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_binary(arg: str | None) -> Path:
    if arg:
        p = Path(arg)
        if not p.is_absolute():
            p = (Path.cwd() / p) if (Path.cwd() / p).exists() else (REPO / p)
        if not p.exists():
            sys.exit(f"binary not found: {arg}")
        return p.resolve()
    for rel in ("target/release/toolgate", "target/debug/toolgate"):
        if (REPO / rel).exists():
            return (REPO / rel).resolve()
    sys.exit("no toolgate binary: build with `make release` (or cargo build) or pass --binary")


class ServerDied(RuntimeError):
    pass


class Server:
    def __init__(self, binary: Path, tmp: Path, log_filter: str) -> None:
        self.binary = binary
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("TOOLGATE_"):
                del self.env[k]  # nothing from the caller's environment leaks in
        self.env.update(
            TOOLGATE_LISTEN=f"127.0.0.1:{self.port}",
            TOOLGATE_DATABASE_URL=f"sqlite://{tmp}/tg.db",
            TOOLGATE_DATA_DIR=str(tmp),
            TOOLGATE_PUBLIC_URL=self.base,
            # Provisioning throughput is measured, not the SCIM rate limit (which would pace it).
            TOOLGATE_RATE_LIMIT_SCIM_PER_SEC="0",
        )
        self.env.pop("RUST_LOG", None)
        # The server's own default filter unless asked otherwise: logs go to server.log in the
        # temporary directory, as a deployment would write them somewhere.
        self.env["TOOLGATE_LOG"] = log_filter
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "server.log"
        self.deadline = time.monotonic() + 3600.0  # set by main() from --timeout

    def run(self, *args: str) -> str:
        r = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=max(1.0, min(120.0, self.deadline - time.monotonic())),
        )
        if r.returncode != 0:
            raise RuntimeError(f"toolgate {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
        return r.stdout

    def token(self, name: str, role: str) -> str:
        lines = [l for l in self.run("token", "create", "--name", name, "--role", role).splitlines() if l.strip()]
        return lines[-1].strip()

    def start(self) -> None:
        self.logf = open(self.log_path, "wb")
        # No shell in between: the pid is toolgate's own (for VmHWM and SIGTERM).
        self.proc = subprocess.Popen(
            [str(self.binary), "serve"],
            env=self.env,
            cwd=self.tmp,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, client: httpx2.AsyncClient, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"toolgate serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = await client.get(f"{self.base}/readyz", timeout=2.0)
                if r.status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"toolgate not ready after {limit_s:.0f} s:\n{self.log_tail()}")

    def ensure_alive(self) -> None:
        if self.proc and self.proc.poll() is not None:
            raise ServerDied(f"toolgate serve exited with {self.proc.returncode} during the run; log tail:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"

    def stop(self) -> int | None:
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log("toolgate did not stop within 15 s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.logf.close()
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# The benchmark


def user_name(i: int) -> str:
    return f"u{i}@contoso.com"


def user_body(i: int) -> dict[str, Any]:
    # Shaped like Entra's default attribute mappings for a SCIM app.
    return {
        "schemas": [USER_URN, ENTERPRISE_URN],
        "userName": user_name(i),
        "externalId": f"u{i}",
        "active": True,
        "displayName": f"User {i}",
        "emails": [{"type": "work", "primary": True, "value": user_name(i)}],
        "name": {"formatted": f"User {i}", "givenName": "User", "familyName": str(i)},
        ENTERPRISE_URN: {"department": f"Dept {i % 50}"},
    }


def group_body(g: int) -> dict[str, Any]:
    return {"schemas": [GROUP_URN], "displayName": f"g{g}", "externalId": f"g{g}"}


def membership_plan(users: int, groups: int, memberships: int) -> list[list[int]]:
    """User indexes per group: `memberships` spread evenly, consecutive users per group, wrapping
    around the user list (10000 users, 500 groups, 50000 memberships: 100 per group, 5 groups per
    user)."""
    per, extra = divmod(memberships, groups)
    plan, start = [], 0
    for g in range(groups):
        n = per + (1 if g < extra else 0)
        plan.append([(start + k) % users for k in range(n)])
        start += n
    return plan


class Bench:
    def __init__(self, args: argparse.Namespace, server: Server, client: httpx2.AsyncClient) -> None:
        self.a = args
        self.server = server
        self.c = client
        self.scim = f"{server.base}/scim/v2"
        self.scim_token = ""
        self.admin_token = ""
        self.user_ids: list[str | None] = [None] * args.users
        self.group_ids: list[str | None] = [None] * args.groups
        self.phases: list[Phase] = []
        self.deny: dict[str, Any] = {}
        self.checks: list[tuple[str, bool, str]] = []

    # -- requests ---------------------------------------------------------------------------

    def scim_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.scim_token}", "Content-Type": SCIM_JSON, "Accept": SCIM_JSON}

    async def call(
        self,
        phase: Phase,
        kind: str,
        method: str,
        url: str,
        *,
        expect: Iterable[int] = (),
        **kw: Any,
    ) -> httpx2.Response | None:
        """One timed request; any status outside 2xx (or `expect`) and any transport error
        counts as an error of the phase."""
        t0 = time.perf_counter()
        try:
            r = await self.c.request(method, url, **kw)
            await r.aread()
        except httpx2.HTTPError as e:
            phase.fail(kind, time.perf_counter() - t0, f"{method} {url}: {type(e).__name__}: {e}")
            self.server.ensure_alive()  # a dead server ends the run instead of erroring on
            return None
        dt = time.perf_counter() - t0
        if 200 <= r.status_code < 300 or r.status_code in expect:
            phase.ok(kind, dt)
            return r
        phase.fail(kind, dt, f"{method} {r.request.url}: {r.status_code} {r.text[:300]}")
        return r

    async def scim_call(self, phase: Phase, kind: str, method: str, path: str, **kw: Any) -> httpx2.Response | None:
        body = kw.pop("body", None)
        if body is not None:
            kw["content"] = json.dumps(body).encode()
        return await self.call(phase, kind, method, f"{self.scim}{path}", headers=self.scim_headers(), **kw)

    # -- running a phase ----------------------------------------------------------------------

    async def run_phase(self, name: str, jobs: list[Callable[[Phase], Awaitable[None]]], concurrency: int) -> Phase:
        """Runs the jobs with `concurrency` workers; each job is one Entra "object" (its
        requests in order), jobs run in parallel like Entra's provisioning threads."""
        phase = Phase(name)
        self.phases.append(phase)
        it = iter(jobs)
        done = 0
        step = max(1, len(jobs) // 5)
        log(f"{name}: {len(jobs)} jobs, concurrency {concurrency}")

        async def worker() -> None:
            nonlocal done
            for job in it:
                try:
                    await job(phase)
                except ServerDied:
                    raise
                except Exception as e:  # a bug in a job must not hang the phase
                    phase.fail("job", None, f"job raised {type(e).__name__}: {e}")
                done += 1
                if done % step == 0:
                    log(f"  {name}: {done}/{len(jobs)} ({time.perf_counter() - t0:.1f} s)")

        pid = self.server.proc.pid if self.server.proc else 0
        cpu0, scpu0, t0 = time.process_time(), proc_cpu_seconds(pid), time.perf_counter()
        try:
            await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        except asyncio.CancelledError:
            phase.total.name += " (cut off by --timeout)"
            raise
        finally:
            phase.total.wall = time.perf_counter() - t0
            phase.total.client_cpu = time.process_time() - cpu0
            phase.total.server_cpu = proc_cpu_seconds(pid) - scpu0
            for k in phase.kinds.values():
                k.wall = phase.total.wall
        t = phase.total
        log(
            f"{name}: {t.requests} requests in {t.wall:.2f} s ({t.requests / max(t.wall, 1e-9):.0f}/s), "
            f"p50 {t.pct(50) or 0:.1f} ms, p99 {t.pct(99) or 0:.1f} ms, errors {t.errors}"
        )
        for e in t.first_errors:
            log(f"  error: {e}")
        return phase

    # -- phases -------------------------------------------------------------------------------

    def users_jobs(self) -> list[Callable[[Phase], Awaitable[None]]]:
        def job(i: int) -> Callable[[Phase], Awaitable[None]]:
            async def run(p: Phase) -> None:
                r = await self.scim_call(
                    p, "GET filter userName", "GET", "/Users", params={"filter": f'userName eq "{user_name(i)}"'}
                )
                if r is not None and r.status_code == 200 and r.json().get("totalResults") != 0:
                    p.fail("GET filter userName", None, f"user {i}: lookup before create found {r.json().get('totalResults')}")
                r = await self.scim_call(p, "POST /Users", "POST", "/Users", body=user_body(i))
                if r is not None and r.status_code == 201:
                    self.user_ids[i] = r.json()["id"]

            return run

        return [job(i) for i in range(self.a.users)]

    def groups_jobs(self) -> list[Callable[[Phase], Awaitable[None]]]:
        def job(g: int) -> Callable[[Phase], Awaitable[None]]:
            async def run(p: Phase) -> None:
                r = await self.scim_call(
                    p,
                    "GET filter displayName",
                    "GET",
                    "/Groups",
                    params={"excludedAttributes": "members", "filter": f'displayName eq "g{g}"'},
                )
                if r is not None and r.status_code == 200 and r.json().get("totalResults") != 0:
                    p.fail("GET filter displayName", None, f"group {g}: lookup before create found {r.json().get('totalResults')}")
                r = await self.scim_call(p, "POST /Groups", "POST", "/Groups", body=group_body(g))
                if r is not None and r.status_code == 201:
                    self.group_ids[g] = r.json()["id"]

            return run

        return [job(g) for g in range(self.a.groups)]

    def membership_jobs(self, plan: list[list[int]]) -> list[Callable[[Phase], Awaitable[None]]]:
        # One job per group: its batches go out one after another (Entra works one object at a
        # time), different groups in parallel.
        def job(g: int, members: list[int]) -> Callable[[Phase], Awaitable[None]]:
            async def run(p: Phase) -> None:
                gid = self.group_ids[g]
                if gid is None:
                    p.fail("PATCH add members", None, f"group {g} was not created")
                    return
                for s in range(0, len(members), self.a.batch):
                    ids = [self.user_ids[i] for i in members[s : s + self.a.batch]]
                    value = [{"value": uid} for uid in ids if uid is not None]
                    if len(value) != len(ids):
                        p.fail("PATCH add members", None, f"group {g}: some members were not created")
                    body = {"schemas": [PATCH_URN], "Operations": [{"op": "Add", "path": "members", "value": value}]}
                    await self.scim_call(p, "PATCH add members", "PATCH", f"/Groups/{gid}", body=body)

            return run

        return [job(g, m) for g, m in enumerate(plan) if m]

    def disable_body(self) -> dict[str, Any]:
        return {"schemas": [PATCH_URN], "Operations": [{"op": "Replace", "path": "active", "value": False}]}

    def disable_jobs(self, users: list[int]) -> list[Callable[[Phase], Awaitable[None]]]:
        def job(i: int) -> Callable[[Phase], Awaitable[None]]:
            async def run(p: Phase) -> None:
                uid = self.user_ids[i]
                if uid is None:
                    p.fail("PATCH active false", None, f"user {i} was not created")
                    return
                await self.scim_call(p, "PATCH active false", "PATCH", f"/Users/{uid}", body=self.disable_body())

            return run

        return [job(i) for i in users]

    async def mcp_initialize(self, p: Phase, kind: str, token: str, expect: Iterable[int] = ()) -> int | None:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}},
        }
        r = await self.call(
            p,
            kind,
            "POST",
            f"{self.server.base}/mcp",
            expect=expect,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
            },
            content=json.dumps(body).encode(),
        )
        return None if r is None else r.status_code

    async def deny_phase(self, users: list[int]) -> None:
        """Disable-to-deny, one user at a time (nothing else in flight): personal token, /mcp
        initialize is 200, then the time from sending the SCIM disable to the first 401 on /mcp,
        polling right after the PATCH response."""
        p = Phase("5. disable-to-deny")
        self.phases.append(p)
        log(f"{p.total.name}: {len(users)} users, one at a time")
        admin = {"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"}
        pid = self.server.proc.pid if self.server.proc else 0
        cpu0, scpu0, t0 = time.process_time(), proc_cpu_seconds(pid), time.perf_counter()
        times: list[float] = []
        polls: list[int] = []
        misses: list[str] = []
        for i in users:
            uid = self.user_ids[i]
            if uid is None:
                p.fail("setup", None, f"user {i} was not created")
                continue
            r = await self.call(
                p, "POST admin token", "POST", f"{self.server.base}/api/v1/users/{uid}/tokens", headers=admin,
                content=json.dumps({"name": "agent"}).encode(),
            )
            if r is None or r.status_code != 201:
                continue
            token = r.json()["token"]
            if await self.mcp_initialize(p, "mcp initialize (active)", token) != 200:
                continue
            start = time.perf_counter()
            r = await self.scim_call(p, "PATCH active false", "PATCH", f"/Users/{uid}", body=self.disable_body())
            if r is None or r.status_code != 200:
                continue
            n, denied = 0, None
            while time.perf_counter() - start < DENY_POLL_LIMIT_S:
                n += 1
                st = await self.mcp_initialize(p, "mcp initialize (disabled)", token, expect=(401,))
                if st == 401:
                    denied = time.perf_counter() - start
                    break
            polls.append(n)
            if denied is None:
                misses.append(f"u{i}")
                p.fail("deny", None, f"user {i}: /mcp still not 401 {DENY_POLL_LIMIT_S:.0f} s after the disable")
            else:
                times.append(denied)
        p.total.wall = time.perf_counter() - t0
        p.total.client_cpu = time.process_time() - cpu0
        p.total.server_cpu = proc_cpu_seconds(pid) - scpu0
        for k in p.kinds.values():
            k.wall = p.total.wall
        self.deny = {
            "users": len(users),
            "measured": len(times),
            "not_denied": misses,
            "median_ms": _r(statistics.median(times) * 1000, 2) if times else None,
            "max_ms": _r(max(times) * 1000, 2) if times else None,
            "min_ms": _r(min(times) * 1000, 2) if times else None,
            "polls_until_401_max": max(polls) if polls else None,
        }
        log(f"{p.total.name}: {self.deny}")

    # -- correctness --------------------------------------------------------------------------

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))
        log(f"check {'OK  ' if ok else 'FAIL'} {name}: {detail}")

    async def verify(self, plan: list[list[int]], disabled: list[int]) -> None:
        h = self.scim_headers()
        want_groups = {f"g{g}" for g, m in enumerate(plan) if 0 in m}
        try:
            r = await self.c.get(f"{self.scim}/Users", params={"filter": f'userName eq "{user_name(0)}"'}, headers=h)
            body = r.json()
            res = body.get("Resources") or [{}]
            got = {x.get("display") for x in res[0].get("groups", [])}
            self.check(
                "u0 read back with its groups",
                r.status_code == 200 and body.get("totalResults") == 1 and got == want_groups,
                f"status {r.status_code}, totalResults {body.get('totalResults')}, groups {sorted(got)} (want {sorted(want_groups)})",
            )
            r = await self.c.get(f"{self.scim}/Groups", params={"excludedAttributes": "members", "count": "1"}, headers=h)
            total = r.json().get("totalResults")
            self.check("group count", r.status_code == 200 and total == self.a.groups, f"totalResults {total}, want {self.a.groups}")
            r = await self.c.get(f"{self.scim}/Users", params={"count": "1"}, headers=h)
            total = r.json().get("totalResults")
            self.check("user count", r.status_code == 200 and total == self.a.users, f"totalResults {total}, want {self.a.users}")
            if disabled and self.user_ids[disabled[0]]:
                r = await self.c.get(f"{self.scim}/Users/{self.user_ids[disabled[0]]}", headers=h)
                active = r.json().get("active")
                self.check(
                    f"disabled user u{disabled[0]} reads back active false",
                    r.status_code == 200 and active is False,
                    f"status {r.status_code}, active {active!r}",
                )
            if plan and plan[0] and self.group_ids[0]:
                r = await self.c.get(f"{self.scim}/Groups/{self.group_ids[0]}", headers=h)
                n = len(r.json().get("members") or [])
                self.check("g0 member count", r.status_code == 200 and n == len(plan[0]), f"{n} members, want {len(plan[0])}")
        except (httpx2.HTTPError, ValueError) as e:
            self.check("verification requests", False, f"{type(e).__name__}: {e}")

    # -- the whole run ------------------------------------------------------------------------

    async def run(self) -> None:
        a = self.a
        await self.server.wait_ready(self.c)
        log(f"toolgate ready at {self.server.base} (pid {self.server.proc.pid if self.server.proc else '?'})")
        plan = membership_plan(a.users, a.groups, a.memberships)
        # Disable the last `disables` users; the deny phase takes the 20 before them.
        disabled = list(range(a.users - a.disables, a.users))
        deny_users = list(range(a.users - a.disables - DENY_USERS, a.users - a.disables))

        await self.run_phase("1. users", self.users_jobs(), a.concurrency)
        await self.run_phase("2. groups", self.groups_jobs(), a.concurrency)
        await self.run_phase("3. memberships", self.membership_jobs(plan), a.concurrency)
        await self.run_phase("4. disables", self.disable_jobs(disabled), a.concurrency)
        await self.deny_phase(deny_users)
        await self.verify(plan, disabled)


# ---------------------------------------------------------------------------------------------
# Reporting


def machine_facts() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": mem, "kernel": platform.release(), "python": platform.python_version()}


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("phase", "Phase"),
        ("requests", "Requests"),
        ("wall_s", "Wall s"),
        ("req_per_s", "Req/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("max_ms", "max ms"),
        ("errors", "Errors"),
        ("server_cpu_s", "Server CPU s"),
        ("client_cpu_s", "Client CPU s"),
    ]
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "|".join("---" if k == "phase" else "---:" for k, _ in cols) + "|"]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k)
            if k == "phase":
                v = f"**{v}**" if r.get("bold") else "&nbsp;&nbsp;" + v.split(": ", 1)[-1]
            cells.append("" if v is None else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def report(bench: Bench, binary: Path, rss: dict[str, Any], args: argparse.Namespace, total_wall: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for p in bench.phases:
        r = p.total.row()
        r["bold"] = True
        r["has_kinds"] = len(p.kinds) > 1
        rows.append(r)
        if len(p.kinds) > 1:
            for k in p.kinds.values():
                kr = k.row()
                kr["wall_s"] = kr["req_per_s"] = kr["client_cpu_s"] = kr["server_cpu_s"] = None
                rows.append(kr)
    result = {
        "binary": str(binary),
        "params": {k: getattr(args, k) for k in ("users", "groups", "memberships", "batch", "disables", "concurrency")},
        "machine": machine_facts(),
        "phases": [{k: v for k, v in r.items() if k not in ("bold", "has_kinds")} for r in rows],
        "disable_to_deny": bench.deny,
        "server_rss_kib": rss,
        "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in bench.checks],
        "total_wall_s": round(total_wall, 2),
    }
    m = result["machine"]
    print()
    print(f"Binary: `{binary}`")
    print(
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}; "
        "client and server share the machine"
    )
    print(f"Parameters: {result['params']}")
    print()
    print(markdown(rows))
    print()
    d = bench.deny
    if d and not d["measured"]:
        print(f"Disable-to-deny: not measured (0/{d['users']} users got through setup)")
    elif d:
        print(
            f"Disable-to-deny ({d['measured']}/{d['users']} users): median {d['median_ms']} ms, max {d['max_ms']} ms, "
            f"min {d['min_ms']} ms; at most {d['polls_until_401_max']} /mcp poll(s) until the 401"
            + (f"; NOT denied within {DENY_POLL_LIMIT_S:.0f} s: {d['not_denied']}" if d["not_denied"] else "")
        )
    # Per request kind (phases with one kind have no kind rows: their own row stands for it).
    for r in rows:
        if r.get("p50_first_tenth_ms") is not None and (not r.get("bold") or not r.get("has_kinds")):
            name = r["phase"]
            print(
                f"Latency drift, {name}: p50 {r['p50_first_tenth_ms']} ms over the first tenth of its requests, "
                f"{r['p50_last_tenth_ms']} ms over the last tenth"
            )
    hwm = rss.get("VmHWM")
    print(f"Server peak RSS (VmHWM): {hwm / 1024:.1f} MiB" if hwm else "Server peak RSS: unknown")
    for n, ok, det in bench.checks:
        print(f"Check {'OK  ' if ok else 'FAIL'} {n}: {det}")
    errs = [(p.total.name, e) for p in bench.phases for e in p.total.first_errors]
    if errs:
        print("\nFirst errors:")
        for name, e in errs:
            print(f"- {name}: {e}")
    print(f"\nTotal run: {total_wall:.1f} s")
    return result


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--binary", help="toolgate binary (default: target/release/toolgate, else target/debug/toolgate)")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--memberships", type=int, default=50000, help="spread evenly over the groups")
    ap.add_argument("--batch", type=int, default=20, help="members per PATCH Add request")
    ap.add_argument("--disables", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight (Entra runs several in parallel)")
    ap.add_argument("--timeout", type=float, default=900.0, help="limit for the whole run, seconds")
    ap.add_argument("--request-timeout", type=float, default=60.0, help="limit per HTTP request, seconds")
    ap.add_argument("--out", help="also write the results as JSON to this file")
    ap.add_argument("--log-filter", default="info,sqlx=warn", help="the server's TOOLGATE_LOG (its default filter)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (database, server log)")
    a = ap.parse_args()
    if a.users < 1 or a.groups < 1 or a.batch < 1 or a.concurrency < 1 or a.memberships < 0 or a.disables < 0:
        ap.error("sizes must be positive")
    if a.disables + DENY_USERS + 1 > a.users:
        ap.error(f"--users must exceed --disables + {DENY_USERS} (u0 stays active; {DENY_USERS} users for disable-to-deny)")
    if a.memberships > a.users * a.groups:
        ap.error("--memberships exceeds users x groups")
    return a


async def amain(args: argparse.Namespace, bench_holder: list[Bench], server: Server) -> None:
    limits = httpx2.Limits(max_connections=args.concurrency + 2, max_keepalive_connections=args.concurrency + 2)
    async with httpx2.AsyncClient(timeout=args.request_timeout, limits=limits, trust_env=False) as client:
        bench = Bench(args, server, client)
        bench_holder.append(bench)
        bench.scim_token = server.scim_token
        bench.admin_token = server.admin_token
        await bench.run()


def main() -> int:
    args = parse_args()
    binary = pick_binary(args.binary)
    tmp = Path(tempfile.mkdtemp(prefix="toolgate-scim-bench-"))
    server = Server(binary, tmp, args.log_filter)
    holder: list[Bench] = []
    rss: dict[str, Any] = {}
    started = time.perf_counter()
    server.deadline = time.monotonic() + args.timeout
    failed = False
    log(f"binary {binary}; temp dir {tmp}")
    try:
        server.run("migrate")
        server.scim_token = server.token("entra", "scim")  # type: ignore[attr-defined]
        server.admin_token = server.token("bench-admin", "admin")  # type: ignore[attr-defined]
        server.start()
        try:
            asyncio.run(asyncio.wait_for(amain(args, holder, server), timeout=max(1.0, server.deadline - time.monotonic())))
        except (asyncio.TimeoutError, TimeoutError, subprocess.TimeoutExpired):
            failed = True
            log(f"run exceeded --timeout {args.timeout:.0f} s; stopping (partial results below)")
        if server.proc:
            for key in ("VmHWM", "VmRSS"):
                rss[key] = proc_status_kb(server.proc.pid, key)
    except KeyboardInterrupt:
        failed = True
        log("interrupted")
    except Exception as e:
        failed = True
        log(f"failed: {type(e).__name__}: {e}")
        log("server log tail:\n" + server.log_tail())
    finally:
        rc = server.stop()
        if rc not in (None, 0):
            log(f"toolgate exited with {rc} after SIGTERM; log tail:\n{server.log_tail()}")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - started
    if not holder:
        return 1
    bench = holder[0]
    result = report(bench, binary, rss, args, total)
    result["completed"] = not failed
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {out}")
    errors = sum(p.total.errors for p in bench.phases)
    bad_checks = [n for n, ok, _ in bench.checks if not ok]
    return 1 if failed or errors or bad_checks else 0


if __name__ == "__main__":
    sys.exit(main())

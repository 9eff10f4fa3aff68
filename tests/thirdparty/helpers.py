"""The official MCP Python SDK as an agent would use it: streamable HTTP, optional bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, PaginatedRequestParams, Tool

T = TypeVar("T")

CALL_TIMEOUT_S = 60


@asynccontextmanager
async def mcp_session(url: str, token: str | None = None) -> AsyncIterator[ClientSession]:
    """An initialized SDK session to `url`, sending `Authorization: Bearer <token>` when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # The SDK takes headers through the httpx2 client it is given (mcp 2.x).
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=CALL_TIMEOUT_S)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                with anyio.fail_after(CALL_TIMEOUT_S):
                    await session.initialize()
                yield session


def with_session(url: str, token: str | None, fn: Callable[[ClientSession], Awaitable[T]]) -> T:
    """Runs `fn(session)` in a fresh SDK session and returns its result (sync, for plain tests)."""

    async def main() -> T:
        async with mcp_session(url, token) as s:
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

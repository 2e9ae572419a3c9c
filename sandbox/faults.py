"""Faults on demand: a test tells the sandbox how the next requests to a path should fail.

`POST /_faults` with `{"path_prefix": "/unsplash/api/search", "kind": "429", "times": 2, "retry_after": 1}`
makes the next two matching requests fail that way; `DELETE /_faults` clears every rule. Kinds:
- `429`: Too Many Requests with a `Retry-After` header (seconds);
- `500`: Internal Server Error;
- `slow`: the response starts only after `delay_s` seconds;
- `truncate`: the headers promise the whole body, but the connection closes halfway through it;
- `noai`: the response as usual, with `X-Robots-Tag: noai` and `X-Robots-Tag: noimageai`, the headers
  DeviantArt sends with an opted-out artwork's file;
- `noai-page`: an HTML page whose robots meta says `noai, noimageai`, served with status 200 instead of
  the file (as a site does that answers a direct link with the artwork's page).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_AI_PAGE = (
    b'<!DOCTYPE html><html><head><meta name="robots" content="noai, noimageai"><title>Artwork</title></head>'
    b"<body><h1>Artwork</h1></body></html>"
)


class FaultRule(BaseModel):
    path_prefix: str = Field(description="Requests whose path starts with this are affected.")
    kind: Literal["429", "500", "slow", "truncate", "noai", "noai-page"]
    times: int = Field(default=1, ge=1, description="How many matching requests fail.")
    retry_after: int = Field(default=1, ge=0, description="Seconds in Retry-After (429 only).")
    delay_s: float = Field(default=2.0, ge=0, description="Delay before answering (slow only).")


class FaultBoard:
    """The active rules; thread-safe because tests add rules while the server answers."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, path: str) -> FaultRule | None:
        """The first rule matching `path`, spending one of its `times`."""
        with self._lock:
            for rule in self._rules:
                if path.startswith(rule.path_prefix):
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                    return rule
        return None


class FaultMiddleware:
    """ASGI middleware that applies the board's rules before (or while) the app answers."""

    def __init__(self, app: ASGIApp, board: FaultBoard) -> None:
        self.app, self.board = app, board

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rule = self.board.take(scope["path"]) if scope["type"] == "http" and not _is_admin(scope) else None
        if rule is None:
            await self.app(scope, receive, send)
        elif rule.kind in ("429", "500"):
            status = int(rule.kind)
            body = b"Too Many Requests" if status == 429 else b"Internal Server Error"
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
            if status == 429:
                headers.append((b"retry-after", str(rule.retry_after).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif rule.kind == "noai":
            await self.app(scope, receive, _marked_no_ai(send))
        elif rule.kind == "noai-page":
            body = NO_AI_PAGE
            headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif rule.kind == "slow":
            await asyncio.sleep(rule.delay_s)
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, _truncating(send))


def _is_admin(scope: Scope) -> bool:
    """Control routes (`/_faults`, each service's `/_admin`) are never faulted, or tests could not recover."""
    return scope["path"].startswith("/_faults") or "/_admin" in scope["path"]


def _marked_no_ai(send: Send) -> Send:
    """Pass the response through with the two `X-Robots-Tag` headers of an opted-out artwork added."""

    async def send_marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (b"x-robots-tag", b"noai"), (b"x-robots-tag", b"noimageai")]
            message = {**message, "headers": headers}
        await send(message)

    return send_marked


def _truncating(send: Send) -> Send:
    """Pass the response start through unchanged, then only half of the body."""
    chunks: list[bytes] = []

    async def send_half(message: Message) -> None:
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            body = b"".join(chunks)
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": False})

    return send_half


def fault_routes(board: FaultBoard) -> APIRouter:
    router = APIRouter(prefix="/_faults", tags=["faults"])

    @router.get("")
    def list_rules() -> list[FaultRule]:
        return board.rules()

    @router.post("", status_code=201)
    def add_rule(rule: FaultRule) -> FaultRule:
        board.add(rule)
        return rule

    @router.delete("", status_code=204)
    def clear_rules() -> None:
        board.clear()

    return router

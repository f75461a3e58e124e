"""A hard cap on the bytes the model server reads for any request, chunked or not.

KServe's handlers read the whole body, then parse it; a limit checked afterwards, or only against
the Content-Length header (which a chunked request has none of), lets one request grow the server
by hundreds of MB before its 400 (issue 27: a 200 MB chunked body was answered 200). This ASGI
middleware reads a request's body itself, stops reading as soon as it passes the limit, answers
413 in one line, and hands the app a body it has already read: memory per request is bounded by
the limit.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger("components.serve")
TOO_LARGE = 413


class BodyLimit:
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.refuse(send, f"request body of {int(declared):,} bytes is over the limit of {self.max_bytes:,}")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.refuse(send, f"request body over the limit of {self.max_bytes:,} bytes (stopped reading there)")
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        await self.app(scope, replay(b"".join(chunks), receive), send)

    async def refuse(self, send, reason: str) -> None:
        log.info("refused a request: %s", reason)
        body = json.dumps({"error": reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": TOO_LARGE, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def replay(body: bytes, receive):
    """The ASGI `receive` of a request whose body was read already: the body once, then what the client does."""
    sent = False

    async def receive_again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again

"""What the model server refuses before KServe's handlers see a request: a body over the limit, and
V2's binary tensor extension; and the one-line answer to a request FastAPI cannot parse.

A hard cap on the bytes the model server reads for any request, chunked or not.

KServe's handlers read the whole body, then parse it; a limit checked afterwards, or only against
the Content-Length header (which a chunked request has none of), lets one request grow the server
by hundreds of MB before its 400 (issue 27: a 200 MB chunked body was answered 200). This ASGI
middleware reads a request's body itself, stops reading as soon as it passes the limit, answers
413 in one line, and hands the app a body it has already read: memory per request is bounded by
the limit.

The binary tensor extension (an `Inference-Header-Content-Length` header) is refused in one line:
KServe's decoding of it answered 500s with tracebacks for malformed requests (issue 27). A request
whose JSON does not fit the V2 schema (`data: null`, `inputs: "x"`) gets a 400 naming the field,
not FastAPI's 422 that echoes the input back.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger("components.serve")
TOO_LARGE = 413
BAD_REQUEST = 400
BINARY_EXTENSION_HEADER = b"inference-header-content-length"


class RequestGuard:
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if BINARY_EXTENSION_HEADER in headers:
            reason = "the binary tensor extension (Inference-Header-Content-Length) is not supported; send the texts as JSON data"
            await self.refuse(send, reason, BAD_REQUEST)
            return
        declared = headers.get(b"content-length", b"")
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

    async def refuse(self, send, reason: str, status: int = TOO_LARGE) -> None:
        log.info("refused a request: %s", reason)
        body = json.dumps({"error": reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
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


async def schema_refusal(_, error):
    """FastAPI's RequestValidationError as a 400 naming the first wrong field, without the input."""
    from fastapi.responses import JSONResponse

    first = (error.errors() or [{}])[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "the request"
    reason = f"{where}: {first.get('msg', 'does not fit the V2 request schema')}"
    log.info("refused a request: %s", reason)
    return JSONResponse(status_code=BAD_REQUEST, content={"error": reason})

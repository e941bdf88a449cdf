"""Reading request bodies with a size limit and clear errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

MAX_JSON_BYTES = 16 * 1024
MAX_SDP_BYTES = 64 * 1024


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, or 413 once it grows past `limit` bytes (it is never read in whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body too large: at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body too large: at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The body as a JSON object, or 400 naming what is wrong with it."""
    body = await read_limited(request, limit)
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HTTPException(400, f"the body is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return value

"""Baseline 4: uvicorn with httptools answering every request with a fixed 24 KB body: the ceiling
for the daemon's cached-frame path."""

from __future__ import annotations

from typing import Any

BODY = bytes(range(256)) * 96  # 24,576 bytes


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"image/jpeg"), (b"content-length", str(len(BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": BODY})

"""A deadline on reading request bodies: a client that sends nothing for `idle_s` in the
middle of its body, or has not sent all of it after `total_s`, gets 408 (RequestTimeout), and
its connection stops holding a worker of the event loop. Responses and the wait for a
disconnect after the body are not limited."""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glimpse.errors import RequestTimeout


class BodyDeadline:
    def __init__(self, app: ASGIApp, *, idle_s: float, total_s: float) -> None:
        self.app = app
        self.idle_s, self.total_s = idle_s, total_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.total_s
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            wait = min(self.idle_s, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.0))
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive in time (no data for {self.idle_s:g} s, "
                    f"or not all of it within {self.total_s:g} s)"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)

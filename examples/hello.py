"""A minimal app for the engine: `kestrel examples.hello:app`."""

import asyncio

from kestrel import Response


async def app(request):
    if request.target == b"/slow":
        await asyncio.sleep(0.1)
        return "slept\n"
    if request.method == "POST":
        body = await request.body()
        return Response(body, status=201, content_type="application/octet-stream")
    return "Hello, World!"

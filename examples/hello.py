"""The demo app: `kestrel examples.hello:app --port 8000`.

curl localhost:8000/                      Hello, World!
curl 'localhost:8000/users/7?q=hi'        {"id":7,"q":"hi"}
curl -d hi localhost:8000/                echoes the body (201)
curl localhost:8000/slow                  a handler that awaits
curl -i -X DELETE localhost:8000/         405, with Allow
"""

import asyncio

from kestrel import App, Request, Response

app = App()


@app.middleware
async def server_timing(request: Request, call_next):
    response = await call_next(request)
    response.headers["x-route"] = request.route or "-"
    return response


@app.get("/")
async def hello(request: Request) -> str:
    return "Hello, World!"


@app.post("/")
async def echo(request: Request) -> Response:
    return Response(await request.body(), status=201, content_type="application/octet-stream")


@app.get("/slow")
async def slow(request: Request) -> str:
    await asyncio.sleep(0.1)
    return "slept\n"


@app.get("/users/{user_id:int}")
async def user(request: Request, user_id: int) -> dict[str, object]:
    return {"id": user_id, "q": request.query.get("q")}

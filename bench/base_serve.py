"""Serving baseline: the same uvicorn, serving one constant bytes object.

A minimal Starlette app (one route, no middleware) answering ``GET /targets/kubelet`` with
the body read from ``--body`` (the runner passes the server's own /targets/kubelet body,
so sizes are equal) and the same headers (Content-Type, ETag, Cache-Control). uvicorn is
configured like the server's: ``log_config=None``, ``access_log=False``, lifespan on, on a
socket bound by ``sd.http.server.bind_socket``.

Started by the runner as ``python -m bench.base_serve`` from the repository root.
"""

import argparse
import asyncio
import hashlib

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sd.http.server import bind_socket, parse_listen


def make_app(body: bytes) -> Starlette:
    headers = {"ETag": '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"', "Cache-Control": "no-cache"}

    async def targets(request):
        return Response(body, media_type="application/json", headers=headers)

    async def healthz(request):
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/targets/kubelet", targets), Route("/healthz", healthz)])


async def main(args):
    with open(args.body, "rb") as fh:
        body = fh.read()
    sock = bind_socket(*parse_listen(args.listen))
    config = uvicorn.Config(make_app(body), log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--body", required=True)
    p.add_argument("--listen", required=True)
    asyncio.run(main(p.parse_args()))

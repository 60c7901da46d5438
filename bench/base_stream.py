"""Streaming-list floor against a real API server: what reading the two collections costs, and
nothing else.

A streaming list of nodes and one of pods (``--pod-selector``, all namespaces), concurrently,
as the server's informers make them (a watch with ``sendInitialEvents=true``,
``resourceVersionMatch=NotOlderThan``, bookmarks): every line ``orjson.loads``-ed, until each
stream's bookmark annotated ``k8s.io/initial-events-end``. The kubeconfig (a client certificate,
the API server's CA) is read with PyYAML: no Kubernetes client library is imported. Prints one
JSON line {"done": <time.monotonic()>, "nodes": n, "pods": m, "bytes": b, "maxrss_kb": k}.
"""

import argparse
import asyncio
import json
import ssl
import sys
import time
from urllib.parse import urlencode

import aiohttp
import orjson
import yaml

END = "k8s.io/initial-events-end"


async def stream(session: aiohttp.ClientSession, server: str, path: str, **params: str) -> tuple[int, int]:
    query = {"watch": "1", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
             "allowWatchBookmarks": "true", **params}
    n = nbytes = 0
    async with session.get(f"{server}{path}?{urlencode(query)}", timeout=aiohttp.ClientTimeout(total=600)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {(await resp.read())[:200]!r}")
        buf = b""
        async for chunk in resp.content.iter_any():
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                nbytes += len(line) + 1
                event = orjson.loads(line)
                if event["type"] == "BOOKMARK":
                    if (event["object"]["metadata"].get("annotations") or {}).get(END) == "true":
                        return n, nbytes
                else:
                    n += 1
    raise RuntimeError(f"{path}: the stream ended before its initial-events-end bookmark")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--pod-selector", default="app.kubernetes.io/name=fluentd")
    args = parser.parse_args()
    config = yaml.safe_load(open(args.kubeconfig))
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
    tls.load_cert_chain(user["client-certificate"], user["client-key"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls), read_bufsize=2**21) as session:
        (nodes, nb), (pods, pb) = await asyncio.gather(
            stream(session, cluster["server"], "/api/v1/nodes"),
            stream(session, cluster["server"], "/api/v1/pods", labelSelector=args.pod_selector),
        )
    done = time.monotonic()
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    print(json.dumps({"done": done, "nodes": nodes, "pods": pods, "bytes": nb + pb, "maxrss_kb": hwm}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)

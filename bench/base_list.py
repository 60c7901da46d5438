"""Initial-sync baselines: list what the server lists, from this process's own start.

  --mode raw    the floor: kubernetes-asyncio calls with ``_preload_content=False``, each
                page read and ``orjson.loads``-ed, nothing else (no records, no index, no HTTP)
  --mode model  the same pages with kubernetes-asyncio's default model deserialization
                (``_preload_content=True``: V1NodeList / V1PodList objects)

Nodes (all) and pods (``--pod-selector``, all namespaces) are listed concurrently, page
size ``--page-size``, like the server's two informers. When both are done it prints one JSON
line: {"done": <time.monotonic()>, "nodes": n, "pods": m, "bytes": b, "maxrss_kb": k} and exits
("maxrss_kb" is VmHWM from /proc/self/status: getrusage's ru_maxrss would include the forked
parent's pages from before exec).
The runner measures spawn → "done", the same way it measures the server (spawn → both 200).
"""

import argparse
import asyncio
import json
import sys
import time

from kubernetes_asyncio import client, config


async def list_raw(fn, page_size, **kw):
    import orjson

    token, n, nbytes = "", 0, 0
    while True:
        args = dict(kw, limit=page_size, _preload_content=False)
        if token:
            args["_continue"] = token
        resp = await fn(**args)
        try:
            body = await resp.read()
        finally:
            resp.release()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
        page = orjson.loads(body)
        n += len(page.get("items") or [])
        nbytes += len(body)
        token = (page.get("metadata") or {}).get("continue") or ""
        del page, body
        if not token:
            return n, nbytes


async def list_model(fn, page_size, **kw):
    token, n = "", 0
    while True:
        args = dict(kw, limit=page_size)
        if token:
            args["_continue"] = token
        page = await fn(**args)
        n += len(page.items or [])
        token = page.metadata._continue or ""
        del page
        if not token:
            return n, 0


def vm_hwm_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


async def main(args):
    configuration = client.Configuration()
    await config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        lister = list_raw if args.mode == "raw" else list_model
        (nn, nb), (pn, pb) = await asyncio.gather(
            lister(core.list_node, args.page_size),
            lister(core.list_pod_for_all_namespaces, args.page_size, label_selector=args.pod_selector),
        )
        done = time.monotonic()
    print(json.dumps({"done": done, "nodes": nn, "pods": pn, "bytes": nb + pb,
                      "maxrss_kb": vm_hwm_kb()}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--mode", choices=["raw", "model"], default="raw")
    p.add_argument("--page-size", type=int, default=500)
    p.add_argument("--pod-selector", default="app.kubernetes.io/name=fluentd")
    asyncio.run(main(p.parse_args()))
    sys.exit(0)

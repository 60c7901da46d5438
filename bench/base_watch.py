"""Watch baselines: consume a node watch stream from the double, nothing else.

  --mode raw    the floor: ``list_node(watch=True, _preload_content=False)``; read chunks,
                split lines, ``orjson.loads`` each line. Nothing else.
  --mode model  kubernetes-asyncio's ``watch.Watch().stream(v1.list_node, resource_version=rv)``
                (json.loads + V1Node model per event).

Protocol (stdout lines, flushed; times are ``time.monotonic()``, comparable across processes):
  --count N    after N events (after the --warmup ones): ``done <t> <n>``
  --warmup W   after the first W events: ``warm <t> <W>``
  --names F    (freshness) for every event on a node named in file F: ``seen <rv> <t>``
The process then waits for stdin to close before exiting, so the runner can read its CPU
times from /proc after "done". The runner knows the watch is open from the double's
``open_watches()``.
"""

import argparse
import asyncio
import sys
import time

from kubernetes_asyncio import client, config, watch


async def run_raw(core, args, on_event):
    import orjson

    resp = await core.list_node(watch=True, resource_version=args.rv, timeout_seconds=3600,
                                _preload_content=False)
    try:
        pending = b""
        async for chunk in resp.content.iter_any():
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if line.strip():
                    event = orjson.loads(line)
                    if on_event(event["object"]["metadata"]):
                        return
    finally:
        resp.release()


async def run_model(core, args, on_event):
    w = watch.Watch()
    async with w:
        async for event in w.stream(core.list_node, resource_version=args.rv, timeout_seconds=3600):
            md = event["object"].metadata
            if on_event({"name": md.name, "resourceVersion": md.resource_version}):
                return


async def main(args):
    configuration = client.Configuration()
    await config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)
    names = set(open(args.names).read().split()) if args.names else None
    count = 0
    out = sys.stdout

    def on_event(md) -> bool:
        nonlocal count
        count += 1
        if names is not None:
            if md.get("name") in names:
                out.write(f"seen {md.get('resourceVersion')} {time.monotonic()}\n")
                out.flush()
            return False
        if count == args.warmup:
            out.write(f"warm {time.monotonic()} {count}\n")
            out.flush()
        if count >= args.warmup + args.count:
            out.write(f"done {time.monotonic()} {count}\n")
            out.flush()
            return True
        return False

    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        await (run_raw if args.mode == "raw" else run_model)(core, args, on_event)
    # Stay alive (idle) until the runner closes stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--mode", choices=["raw", "model"], default="raw")
    p.add_argument("--rv", required=True)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--names")
    asyncio.run(main(p.parse_args()))

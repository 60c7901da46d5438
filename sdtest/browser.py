"""Browser-test support: Debian's Chromium, headless, driven by Playwright, and a small
cluster that shows every part of the status pages (a conflict, an excluded node, bad
data, a hostile label value).

Playwright drives ``/usr/bin/chromium`` (never a browser of its own), started with the
flags below and a fresh profile per browser. Every request the page makes is recorded;
one to any other host than the server under test is aborted and kept in ``foreign``.
Routing runs in this (Python) process, so a page's requests wait while Python sleeps:
with a page open, wait with Playwright's own waits (``expect``, ``wait_for_*``), never
``time.sleep`` or ``sdtest.helpers.eventually``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Dialog, Page, Request, Route, sync_playwright

from sdtest.factories import make_node, make_pod

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What a browser sends for a page (Chromium's navigation Accept header).
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"
HOSTILE = "<img src=x onerror=alert(1)>"
# Where screenshots go: kept after the run (git ignores it), to be looked at.
ARTIFACTS = Path(os.environ.get("SD_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


class Browser:
    """One headless Chromium with a fresh profile; ``page(base)`` opens a tab that may
    talk only to ``base``'s host and port."""

    def __init__(self) -> None:
        self._profile = tempfile.mkdtemp(prefix="sd-chromium-")
        self._playwright = sync_playwright().start()
        self.context = self._playwright.chromium.launch_persistent_context(
            self._profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1280, "height": 900}
        )
        self.requests: list[str] = []  # every URL any page asked for
        self.foreign: list[str] = []  # those not to the server under test (aborted)
        self.dialogs: list[str] = []  # alert/confirm/prompt messages: none may ever open
        self.errors: list[str] = []  # console errors (a CSP violation is one) and uncaught exceptions

    def page(self, base: str) -> Page:
        allowed = urlsplit(base).netloc
        page = self.context.new_page()

        def route(route: Route, request: Request) -> None:
            self.requests.append(request.url)
            if urlsplit(request.url).netloc != allowed:
                self.foreign.append(request.url)
                route.abort()
            else:
                route.continue_()

        def dialog(d: Dialog) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(message.text)

        page.route("**/*", route)
        page.on("dialog", dialog)
        page.on("console", console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        return page

    def forget(self) -> None:
        """Close every page and forget what they did (between tests)."""
        for page in self.context.pages:
            page.close()
        for seen in (self.requests, self.foreign, self.dialogs, self.errors):
            seen.clear()

    def close(self) -> None:
        self.context.close()
        self._playwright.stop()
        shutil.rmtree(self._profile, ignore_errors=True)


def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    """Save a screenshot (of the whole page, or of what the window shows) under ARTIFACTS."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def status_cluster() -> list[dict[str, Any]]:
    """Nodes and pods (documentation addresses only) that fill every table of the pages:
    two Ready nodes on one IP (the older loses), a NotReady node, an IPv6-only node, a node
    whose address is not an IP, dual-stack Fluentd pods, one of them labelled with HTML."""
    nodes = [
        make_node("node-a", ["192.0.2.9"], labels={"topology.kubernetes.io/zone": "zone-a"}),
        make_node("node-b-old", ["192.0.2.10"], created="2026-02-01T00:00:00Z"),
        make_node("node-b", ["192.0.2.10"], created="2026-06-01T00:00:00Z"),
        make_node("node-down", ["192.0.2.11"], ready="False"),
        make_node("node-v6", ["2001:db8::21:3"]),
        make_node("node-bad", ["not-an-ip"]),
    ]
    pods = [
        make_pod("fluentd-a", ["198.51.100.9", "2001:db8:244::2:7"], node="node-a", labels={"team": HOSTILE}),
        make_pod("fluentd-b", ["198.51.100.10", "2001:db8:244::21:3"], node="node-b"),
        make_pod("fluentd-c", ["198.51.100.11"], node="node-down", phase="Pending", ready="False"),
    ]
    return nodes + pods


def write_snapshot(path: Path, objects: list[dict[str, Any]]) -> str:
    path.write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": objects}))
    return str(path)


def browser() -> Iterator[Browser]:
    """For a pytest fixture: one browser, closed afterwards."""
    b = Browser()
    try:
        yield b
    finally:
        b.close()

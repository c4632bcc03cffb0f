"""The web dashboard in headless Chromium, on a swarm that is still running."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from swarm.api.testing import live_api
from tests.conftest import make_settings

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


def decode_png(data: bytes) -> np.ndarray:
    """8-bit RGB(A) non-interlaced PNG → array (what Chromium writes); no imaging library needed."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), dtype=np.int32)
    prev = np.zeros(width * channels, dtype=np.int32)
    for y in range(height):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        cur = np.zeros_like(line)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: a running sum along the row, per channel
            cur = np.cumsum(line.reshape(-1, channels), axis=0).reshape(-1) & 0xFF
        elif f == 2:
            cur = (line + prev) & 0xFF
        else:  # Average and Paeth depend on the left neighbour: go pixel by pixel
            for x in range(len(line)):
                a = cur[x - channels] if x >= channels else 0
                b, c = prev[x], (prev[x - channels] if x >= channels else 0)
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + pred) & 0xFF
        out[y], prev = cur, cur
    return out.reshape(height, width, channels)[:, :, :3]


@pytest.fixture
def api(tmp_path, pg_url, sim):
    with live_api(make_settings(tmp_path, pg_url, sim.url)) as a:
        yield a


def test_run_page_shows_a_live_timeline(api, tmp_path):
    from playwright.sync_api import sync_playwright

    key = api.key("dash")
    with api.client(key) as c:
        task = "dashboard #sim agents=10 tools=4 tool=echo latency=0.5"  # runs ~4 s: long enough to watch
        run_id = c.post("/v1/runs", json={"task": task}).json()["id"]
    shot, timeline_shot = tmp_path / "run.png", tmp_path / "timeline.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{api.url}/dashboard/runs/{run_id}?key={key}")
            # The key moved to localStorage and out of the address bar.
            assert "key=" not in page.url
            # (wait_for_function would need eval, which the page's Content-Security-Policy forbids)
            page.wait_for_selector("#timeline rect.bar >> nth=9", state="attached", timeout=15_000)
            page.wait_for_selector(".agent-row[data-agent] >> nth=3", timeout=15_000)
            assert page.locator("#run-status").inner_text() == "running"
            assert api.store.run_summary(run_id).status == "running"
            box = page.locator("#timeline svg").bounding_box()
            assert box is not None
            page.screenshot(path=str(shot))
            page.screenshot(path=str(timeline_shot), clip=box)
            bars = page.locator("#timeline rect.bar").count()
            rows = page.locator(".agent-row[data-agent]").count()
            assert bars >= 10 and rows >= 4
            assert page.locator(".agent-row[data-agent]").first.inner_text().startswith("orchestrator")
            assert page.locator("#event-log li").count() > 0
            # The runs list, with the key remembered from the first visit.
            page.goto(f"{api.url}/dashboard/")
            page.wait_for_selector(".run-row", timeout=10_000)
            assert run_id[:12] in page.locator(".run-row").first.inner_text()
            assert "tenant dash" in page.locator("#whoami").inner_text()
            assert errors == []
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    region = decode_png(timeline_shot.read_bytes())
    assert region.shape[0] >= 100 and region.shape[1] >= 600 and region.std() > 10, "the timeline should not be blank"
    # The step bars' colours are there: LLM-call blue (#4e79a7) and subagent/running bars.
    llm_blue = np.all(np.abs(region - np.array([0x4E, 0x79, 0xA7])) < 12, axis=-1).sum()
    saturated = (region.max(axis=-1) - region.min(axis=-1) > 60).sum()
    assert llm_blue > 200 and saturated > 1000, (llm_blue, saturated)
    api.wait(run_id)


def test_the_api_docs_pages_work_without_internet(api):
    """Swagger UI's and ReDoc's scripts come from swarm itself: with every request to another host
    refused, both pages still show the API's operations."""
    from playwright.sync_api import sync_playwright

    foreign: list[str] = []

    def only_local(route):
        if route.request.url.startswith(api.url):
            route.continue_()
        else:
            foreign.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", only_local)
            page.goto(f"{api.url}/docs")
            page.wait_for_selector(".opblock-summary-path >> nth=5", timeout=15_000)
            paths = {page.locator(".opblock-summary-path").nth(i).inner_text().replace("\u200b", "") for i in range(6)}
            assert "/v1/runs" in paths
            page.goto(f"{api.url}/redoc")
            page.wait_for_selector("text=Submit a run >> nth=0", state="attached", timeout=15_000)
            # Only ReDoc's "powered by" logo is a foreign image; no script, style or data is.
            assert [f for f in foreign if not f.startswith("image ")] == []
        finally:
            browser.close()


def test_a_call_awaiting_approval_is_decided_with_the_run_pages_buttons(api):
    from playwright.sync_api import sync_playwright

    from swarm.sim.params import call_directive

    key = api.key("dash")
    with api.client(key) as c:
        task = "say it " + call_directive("echo", {"text": "hello"})
        first = c.post("/v1/runs", json={"task": task, "approve_tools": ["echo"]}).json()["id"]
        second = c.post("/v1/runs", json={"task": task, "approve_tools": ["echo"]}).json()["id"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{api.url}/dashboard/runs/{first}?key={key}")
            page.wait_for_selector("#approvals-box li.approval", timeout=15_000)
            assert "echo" in page.locator("#approvals-box li.approval").inner_text()
            page.locator("li.approval button.approve").click()
            page.wait_for_selector("#approvals-box", state="hidden", timeout=15_000)
            assert api.wait(first)["status"] == "succeeded"

            page.goto(f"{api.url}/dashboard/runs/{second}")
            page.wait_for_selector("#approvals-box li.approval", timeout=15_000)
            page.locator("li.approval button.reject").click()  # no reason yet: refused, says why
            assert "reason" in page.locator("#notice").inner_text()
            page.locator("li.approval input").fill("not from the dashboard")
            page.locator("li.approval button.reject").click()
            page.wait_for_selector("#approvals-box", state="hidden", timeout=15_000)
            assert errors == []
        finally:
            browser.close()
    done = api.wait(second)
    assert done["status"] == "succeeded" and "not from the dashboard" in done["result"]


def test_a_fork_and_its_origin_link_to_each_other(api):
    from playwright.sync_api import sync_playwright

    key = api.key("dash")
    with api.client(key) as c:
        origin = c.post("/v1/runs", json={"task": "t #sim agents=1 tools=1 tool=echo"}).json()["id"]
        api.wait(origin)
        first = api.store.steps_of(origin)[0]
        fork_id = c.post(f"/v1/runs/{origin}/fork", json={"at_step": first.step_id}).json()["id"]
        api.wait(fork_id)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{api.url}/dashboard/runs/{fork_id}?key={key}")
            page.wait_for_selector("#run-lineage a", timeout=10_000)
            assert page.locator("#run-lineage").inner_text().startswith(f"forked from {origin[:12]} at step")
            page.locator("#run-lineage a").first.click()
            page.wait_for_url(f"**/dashboard/runs/{origin}", timeout=10_000)
            page.wait_for_selector("#run-lineage a", timeout=10_000)
            assert page.locator("#run-lineage").inner_text() == f"forks: {fork_id[:12]}"
        finally:
            browser.close()


def test_run_page_lists_files_and_previews_images(api, tmp_path):
    from playwright.sync_api import sync_playwright

    from swarm.sim.params import call_directive
    from tests.integration.test_tool_images import WRITE_PLOT

    key = api.key("dash")
    with api.client(key) as c:
        task = "plot " + call_directive("python", {"code": WRITE_PLOT})
        run_id = c.post("/v1/runs", json={"task": task}).json()["id"]
    api.wait(run_id)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{api.url}/dashboard/runs/{run_id}?key={key}")
            page.wait_for_selector('#files .file-row[data-path="plots/plot.png"]', timeout=15_000)
            # The preview was fetched with the key and decoded (a CSP or auth failure never loads).
            page.wait_for_selector("#files img.preview[data-loaded]", state="attached", timeout=15_000)
            assert page.locator("#files img.preview").get_attribute("src").startswith("blob:")
            assert page.locator("#files .file-row").count() == 1
            assert page.locator("#files-count").inner_text() == "1 file(s)"
            with page.expect_download() as download:
                page.locator("#files a.file-link").first.click()
            assert download.value.suggested_filename == "plot.png"
            assert errors == []
        finally:
            browser.close()

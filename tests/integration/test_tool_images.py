"""Images reach the model: a PNG written by `python` goes to the agent's next model call as an
image part, downscaled; an image a tool returns (as MCP tools do) too; with SWARM_LLM_VISION=false
the model gets a note instead. The simulated model reports what it received."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from swarm.runtime import LocalRuntime, run_spec
from swarm.sim.params import call_directive
from swarm.store.store import StateStore
from swarm.tools.base import ToolContext, ToolImage, ToolRegistry, ToolResult
from swarm.tools.builtin import default_registry
from tests.conftest import make_settings


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


#: The python tool writes a 2000x1000 PNG (bytes made here: the sandbox needs no Pillow).
WRITE_PLOT = f"""
import base64, os
os.makedirs("plots", exist_ok=True)
open("plots/plot.png", "wb").write(base64.b64decode({base64.b64encode(_png(2000, 1000)).decode()!r}))
print("saved plots/plot.png")
"""


def _run(settings, store: StateStore, task: str, tools: ToolRegistry | None = None) -> tuple[str, str]:
    with LocalRuntime(settings, store=store, tools=tools) as rt:
        run_id = rt.submit(run_spec(settings, task))
        done = rt.wait(run_id, timeout=60)
    assert done.status == "succeeded", done.reason
    return run_id, store.run_summary(run_id).result or ""


def test_a_png_written_by_python_reaches_the_model_as_an_image_part(tmp_path, db_url, sim):
    settings = make_settings(tmp_path, db_url, sim.url)
    store = StateStore.from_url(db_url)
    run_id, answer = _run(settings, store, "plot " + call_directive("python", {"code": WRITE_PLOT}))
    assert "saved plots/plot.png" in answer and "[saw 1 image(s)]" in answer, answer
    assert "[image plots/plot.png 1024x512]" in answer  # downscaled to 1024 px a side
    seen = [e["images"] for e in sim.log(run_id)]
    assert seen == [0, 1], seen  # the call, then the answer with the plot in view
    # The image is stored with the tool result: the next request rebuilds byte-identically.
    calls = sim.usage(run_id)["calls"]
    assert not any(c["prefix_break"] for c in calls)
    assert store.artifacts(run_id)["plots/plot.png"][1][:8] == b"\x89PNG\r\n\x1a\n"
    store.engine.dispose()


def test_with_vision_off_the_model_gets_a_note_instead(tmp_path, sqlite_url, sim):
    settings = make_settings(tmp_path, sqlite_url, sim.url, llm_vision=False)
    store = StateStore.from_url(sqlite_url)
    run_id, answer = _run(settings, store, "plot " + call_directive("python", {"code": WRITE_PLOT}))
    assert "[saw 0 image(s)]" in answer, answer
    assert "[image plots/plot.png 1024x512 omitted: this model cannot see images]" in answer
    assert [e["images"] for e in sim.log(run_id)] == [0, 0]
    store.engine.dispose()


class _Camera:
    """A tool that returns images in its result, as an MCP tool's image content arrives."""

    name = "camera"
    description = "Take pictures."
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    uses_workspace = False

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        shots = tuple(ToolImage("image/png", _png(64, 48)) for _ in range(5))
        return ToolResult("took 5 pictures", images=(*shots, ToolImage("image/png", b"not a png")))


def test_images_a_tool_returns_reach_the_model_capped_per_call(tmp_path, sqlite_url, sim):
    settings = make_settings(tmp_path, sqlite_url, sim.url)
    store = StateStore.from_url(sqlite_url)
    tools = default_registry(settings)
    tools.register(_Camera())
    run_id, answer = _run(settings, store, "snap " + call_directive("camera", {}), tools)
    assert "took 5 pictures [saw 4 image(s)]" in answer, answer
    assert "[image tool image 1 64x48]" in answer
    assert "[image tool image 5 omitted: a tool call shows the model at most 4 images]" in answer
    assert "[image tool image 6 omitted: a tool call shows the model at most 4 images]" in answer
    store.engine.dispose()

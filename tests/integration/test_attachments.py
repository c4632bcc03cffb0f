"""Files attached to a run reach the model (images as image parts) and the python tool's workspace."""

from __future__ import annotations

import base64

from sqlalchemy import select

from swarm.engine.workspace import Workspace
from swarm.runtime import LocalRuntime, run_spec
from swarm.store.models import Message
from swarm.store.store import StateStore
from tests.conftest import make_settings

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_attachments_become_content_parts_and_workspace_files(tmp_path, sqlite_url, sim):
    (tmp_path / "pixel.png").write_bytes(PNG)
    (tmp_path / "notes.txt").write_text("the secret number is 42\n")
    s = make_settings(tmp_path, sqlite_url, sim.url)
    store = StateStore.from_url(sqlite_url)
    spec = run_spec(
        s, "look #sim agents=1 tools=1 tool=echo", attachments=[tmp_path / "pixel.png", tmp_path / "notes.txt"]
    )
    with LocalRuntime(s, store=store) as rt:
        run_id = rt.submit(spec)
        assert rt.wait(run_id, timeout=60).status == "succeeded"

    with store.read() as conn:
        first_user = conn.execute(
            select(Message.content).where(Message.run_id == run_id, Message.role == "user").order_by(Message.id)
        ).first()
    parts = first_user.content
    assert parts[0] == {"type": "text", "text": "look #sim agents=1 tools=1 tool=echo"}
    assert parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2] == {"type": "text", "text": "Attached file notes.txt:\nthe secret number is 42\n"}

    with Workspace(run_id, store.artifacts(run_id)) as ws:
        assert (ws.path / "notes.txt").read_text() == "the secret number is 42\n"
        assert (ws.path / "pixel.png").read_bytes() == PNG
        (ws.path / "out.csv").write_text("a,b\n")
        assert set(ws.changed().files) == {"out.csv"}


def test_workspace_refuses_paths_escaping_it(tmp_path):
    with Workspace("r", {"../../etc/evil": ("x", b"boom"), "ok/a.txt": ("y", b"fine")}) as ws:
        assert (ws.path / "ok" / "a.txt").read_bytes() == b"fine"
        assert not (ws.path.parent.parent / "etc" / "evil").exists()

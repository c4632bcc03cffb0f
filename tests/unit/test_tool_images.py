"""Images for the model: downscaled and size-capped once (Pillow), and placed after a turn's tool
results in a user message (image parts only go in user messages)."""

from __future__ import annotations

import base64
import io
import json
import os

from PIL import Image

from swarm.domain import images
from swarm.domain.images import Picture
from swarm.engine.images import shrink


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def test_a_large_noisy_image_is_scaled_and_reencoded_under_the_cap():
    noise = Image.frombytes("RGB", (3000, 2000), os.urandom(3000 * 2000 * 3))
    p = shrink("noise.png", _encode(noise, "PNG"))
    assert (p.width, p.height) == (1024, 683) or max(p.width, p.height) <= images.MAX_SIDE
    data = base64.b64decode(p.data)
    assert len(data) <= images.MAX_BYTES and p.mime == "image/jpeg" and data[:2] == b"\xff\xd8"


def test_a_small_png_stays_a_png_and_garbage_is_named_not_sent():
    p = shrink("dot.png", _encode(Image.new("RGBA", (10, 5)), "PNG"))
    assert (p.mime, p.width, p.height) == ("image/png", 10, 5)
    bad = shrink("bad.png", b"\x89PNG not really")
    assert bad.omitted.startswith("it could not be read as an image") and not bad.data


def test_images_follow_the_turns_tool_messages_and_become_notes_without_vision():
    pic = Picture("p.png", "image/png", 4, 3, "AAAA").record()
    rows = [
        ({"role": "user", "content": "go"}, None),
        ({"role": "assistant", "content": "", "tool_calls": [{"id": "a"}, {"id": "b"}]}, None),
        ({"role": "tool", "tool_call_id": "a", "content": "x"}, [pic]),
        ({"role": "tool", "tool_call_id": "b", "content": "y"}, None),
        ({"role": "assistant", "content": "done"}, None),
    ]
    out = images.with_images(rows, vision=True)
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "tool", "user", "assistant"]
    parts = out[4]["content"]
    assert parts[-1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    blind = images.with_images(rows, vision=False)[4]["content"]
    assert blind[-1]["text"] == "[image p.png 4x3 omitted: this model cannot see images]"
    assert all(p["type"] == "text" for p in blind)
    # The last turn's images come after its tool messages too (the next call is about to be made).
    assert images.with_images(rows[:4], vision=True)[-1]["role"] == "user"


def test_without_vision_images_attached_to_the_task_become_notes_too():
    task = {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}]}
    assert images.with_images([(task, None)], vision=True) == [task]
    blind = images.with_images([(task, None)], vision=False)[0]["content"]
    assert blind == [{"type": "text", "text": "look"}, {"type": "text", "text": images.ATTACHED_NOTE}]


def test_a_budget_counts_an_image_as_a_few_thousand_tokens_not_its_base64():
    from swarm.domain import budget

    big = "A" * 1_400_000  # about 1 MB of image, base64
    with_image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": big}}]}]
    size = budget.prompt_bytes(with_image, [])
    assert budget.IMAGE_TOKENS * budget.BYTES_PER_TOKEN <= size < budget.IMAGE_TOKENS * budget.BYTES_PER_TOKEN + 200
    plain = [{"role": "user", "content": "hello"}]
    assert budget.prompt_bytes(plain, []) == len(json.dumps([plain, []]).encode())

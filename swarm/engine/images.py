"""The images a tool call hands the model, made small enough to send: the images its result
carries (an MCP tool's) and the PNG and JPEG files it wrote or changed in the run's workspace (a
matplotlib plot), each decoded, scaled to at most ``MAX_SIDE`` pixels a side and re-encoded
under ``MAX_BYTES`` (Pillow). What cannot be decoded, or is one image too many, is named in a note
instead (:class:`swarm.domain.images.Picture`)."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence

from PIL import Image

from swarm.domain import images as pictures
from swarm.domain.images import Picture
from swarm.domain.workspace import Changes
from swarm.tools.base import ToolImage

log = logging.getLogger(__name__)

#: An image file larger than this is not even read (a plot is far smaller).
MAX_SOURCE_BYTES = 32 * 1024 * 1024
#: Decoded pixels an image may have: Pillow refuses a larger one (a decompression bomb).
MAX_PIXELS = 64_000_000


def collect(images: Sequence[ToolImage], changes: Changes | None) -> list[Picture]:
    """The pictures of one tool call: its result's images, then the image files it saved, by path."""
    sources: list[tuple[str, bytes | None]] = [(f"tool image {i + 1}", img.data) for i, img in enumerate(images)]
    if changes is not None:
        for path in sorted(p for p in changes.files if pictures.is_image_path(p)):
            change = changes.files[path]
            try:
                data = change.read(MAX_SOURCE_BYTES) if change.size <= MAX_SOURCE_BYTES else None
            except OSError:
                data = None
            sources.append((path, data))
    out: list[Picture] = []
    for i, (name, data) in enumerate(sources):
        if i >= pictures.MAX_PER_CALL:
            out.append(Picture(name, omitted=f"a tool call shows the model at most {pictures.MAX_PER_CALL} images"))
        elif data is None:
            out.append(Picture(name, omitted="the file is too large or could not be read"))
        else:
            out.append(shrink(name, data))
    return out


def shrink(name: str, data: bytes) -> Picture:
    """``data`` (a PNG or JPEG) as the model gets it: at most MAX_SIDE pixels a side; a PNG kept as
    a PNG if that fits MAX_BYTES, else (and a JPEG always) a JPEG of falling quality (and size)
    until it does."""
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            if im.width * im.height > MAX_PIXELS:
                return Picture(name, omitted=f"it has too many pixels ({im.width}x{im.height})")
            photo = im.format == "JPEG"
            if photo:  # decode a large JPEG at a fraction of its size: several times faster
                im.draft("RGB", (pictures.MAX_SIDE, pictures.MAX_SIDE))
            im.load()
            image = im.copy()
    except Exception as exc:  # Pillow raises many kinds; none may fail the tool step
        log.info("image %s not shown to the model: %s", name, exc)
        return Picture(name, omitted=f"it could not be read as an image ({type(exc).__name__})")
    image.thumbnail((pictures.MAX_SIDE, pictures.MAX_SIDE))
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    # A photo stays a JPEG; a PNG (a plot: flat colours, sharp lines) stays a PNG if it fits.
    encoded = b"" if photo else _png(image)
    mime = "image/png"
    if photo or len(encoded) > pictures.MAX_BYTES:
        mime = "image/jpeg"
        flat = image.convert("RGB")
        for quality in (85, 70, 50, 35):
            encoded = _jpeg(flat, quality)
            if len(encoded) <= pictures.MAX_BYTES:
                break
        while len(encoded) > pictures.MAX_BYTES and min(flat.size) > 16:
            flat = flat.resize((max(1, flat.width // 2), max(1, flat.height // 2)))
            encoded = _jpeg(flat, 35)
        image = flat
    return Picture(name, mime, image.width, image.height, base64.b64encode(encoded).decode())


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

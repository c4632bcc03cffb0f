"""A run file's path as a user names it (``swarm files --get``, ``GET /v1/runs/{id}/files/{path}``):
checked before it is looked up or written to disk, so no request reaches outside a run's files and
no download lands outside the directory it was asked into."""

from __future__ import annotations

from swarm.exceptions import InputError

#: ``artifacts.path`` is VARCHAR(512).
MAX_PATH_CHARS = 512

#: What :func:`check_path` accepts, as a regular expression (the REST API's schema states it).
#: ``(?![\s\S])`` is the very end in every dialect (``$`` also matches before a final newline in Python's).
_END = r"(?![\s\S])"
_PART = rf"(?!\.\.?(?:/|{_END}))[^/\\\x00-\x1f\x7f]+"
PATH_PATTERN = rf"^(?=[\s\S]{{1,{MAX_PATH_CHARS}}}{_END}){_PART}(?:/{_PART})*{_END}"

#: Content types a run file is served as, by suffix: images only, which browsers show inline and
#: cannot run script in. Everything else is a download (application/octet-stream).
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def check_path(path: str) -> str:
    """``path`` if it names a file inside a run's workspace: relative, with ``/`` between parts,
    and no empty, ``.`` or ``..`` part, backslash, NUL or control character. Else InputError
    saying what to change. (Symlinks are never saved as run files, so none can be named.)"""
    if not path:
        raise InputError("the file path is empty: name a file as `swarm files RUN_ID` lists it")
    if len(path) > MAX_PATH_CHARS:
        raise InputError(f"the file path is longer than {MAX_PATH_CHARS} characters")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in path):
        raise InputError("the file path holds a control character (NUL, newline, ...)")
    if "\\" in path:
        raise InputError(f"the file path {path!r} holds a backslash: separate its parts with '/'")
    if path.startswith("/"):
        raise InputError(f"the file path {path!r} is absolute: give it relative to the run's workspace")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise InputError(f"the file path {path!r} has an empty, '.' or '..' part: give it as listed")
    return path


def media_type(path: str) -> str:
    """What a run file is served as: an image type by its suffix, else a download."""
    name = path.rsplit("/", 1)[-1]
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    return IMAGE_TYPES.get(suffix, "application/octet-stream")

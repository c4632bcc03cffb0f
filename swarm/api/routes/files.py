"""A run's workspace files: the list, and one file's bytes."""

from __future__ import annotations

import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from swarm.api.auth import Auth, Ctx
from swarm.api.errors import error_responses
from swarm.api.routes.runs import RunId
from swarm.api.schemas import FileList, FileOut
from swarm.domain import files

router = APIRouter(prefix="/v1", tags=["files"])

FilePath = Annotated[
    str,
    Path(
        # Stated in the schema, checked by domain.files.check_path (422): the pattern needs
        # look-ahead, which pydantic's regex engine does not have.
        json_schema_extra={"pattern": files.PATH_PATTERN},
        description="The file's path as the list gives it: relative, '/' between parts, no empty, '.' or '..' "
        "part, backslash or control character.",
    ),
]


@router.get(
    "/runs/{run_id}/files",
    response_model=FileList,
    summary="List a run's files",
    responses=error_responses(401, 403, 404, 422, 503),
)
def list_files(run_id: RunId, auth: Auth, ctx: Ctx) -> FileList:
    """Every file of the run's workspace (attachments and what its tool calls wrote): path, size,
    sha256 and the step that last wrote it."""
    found = ctx.runs.files(run_id, scope=auth.scope)
    return FileList(run_id=run_id, files=[FileOut.model_validate(f.as_dict()) for f in found])


@router.get(
    "/runs/{run_id}/files/{path:path}",
    response_class=Response,
    summary="Download one of a run's files",
    responses={
        200: {"description": "The file's bytes.", "content": {"application/octet-stream": {}}},
        **error_responses(401, 403, 404, 422, 503),
    },
)
def get_file(run_id: RunId, path: FilePath, auth: Auth, ctx: Ctx) -> Response:
    """The file's bytes. A path with an empty, `.` or `..` part, a leading `/`, a backslash or a
    control character is refused (422). Images (PNG, JPEG, GIF, WebP) are served as what they are,
    for the dashboard's previews; anything else as a download (`application/octet-stream`), and
    never as something a browser would run."""
    info, data = ctx.runs.read_file(run_id, path, scope=auth.scope)
    media = files.media_type(info.path)
    name = urllib.parse.quote(info.path.rsplit("/", 1)[-1])  # headers are latin-1: RFC 6266's form
    disposition = "inline" if media.startswith("image/") else "attachment"
    headers = {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{name}",
        "ETag": f'"{info.sha256}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "X-Swarm-Sha256": info.sha256,
        "X-Swarm-Updated-At": repr(info.updated_at),
    }
    if info.step_id:
        headers["X-Swarm-Step-Id"] = info.step_id
    return Response(data, media_type=media, headers=headers)

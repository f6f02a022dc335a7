"""The web viewer: ``GET /`` serves a page that segments a point file with ``POST /segment`` and draws it.

The page (``serve/static/viewer/``: html, scripts, stylesheet) sends the file as it is to ``/segment``
with ``Accept: application/x-ply`` and draws the labelled PLY the service answers: the points the
server decoded, with their labels and palette colours, so the browser never reads a point format
itself (one reader, `seg3d.points`, on the server). It draws with three.js, vendored in
``serve/static/three/`` (version, origin and checksums in its ``VENDORED.md``); it loads nothing from
another host.

``GET /viewer/config.json`` gives the page the served model's name, its class table (names and
colours from `seg3d.classes`, the palette the labelled answers use) and the point formats the
service reads. Like the model metadata of ``/v2/models/{name}`` it needs the bearer token when
auth is on, and answers 503 until the model is ready. The page and its assets need no token (as
``/docs``), so a user can open it and type the token in.

All URLs in the page are relative, so it also works behind a proxy that serves the app under a
prefix.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from seg3d.points import PointFormat
from serve.dependencies import Model, State, require_auth
from serve.schemas import error_responses

__all__ = [
    "CONFIG_URL",
    "THREE_DIR",
    "THREE_URL",
    "VIEWER_ASSETS_URL",
    "VIEWER_DIR",
    "VIEWER_URL",
    "ViewerClass",
    "ViewerConfig",
    "ViewerFormat",
    "install_viewer",
    "router",
]

_SERVE = Path(__file__).resolve().parent.parent
#: The page, its scripts and stylesheet, found next to the package (not through the working directory);
#: under ``static/``, which the package data (pyproject) ships whole.
VIEWER_DIR = _SERVE / "static" / "viewer"
#: three.js, vendored unmodified (see ``VENDORED.md`` there).
THREE_DIR = _SERVE / "static" / "three"
VIEWER_URL = "/"
VIEWER_ASSETS_URL = "/static/viewer"
THREE_URL = "/static/three"
CONFIG_URL = "/viewer/config.json"

router = APIRouter()


class ViewerClass(BaseModel):
    index: int = Field(description="the label value of the class (index in the model's class table)")
    name: str
    colour: tuple[int, int, int] = Field(description="RGB 0-255, the colour of the labelled PCD/PLY answers")


class ViewerFormat(BaseModel):
    value: str = Field(description="the `format` parameter of `POST /segment`")
    description: str


class ViewerConfig(BaseModel):
    """What the viewer page needs to know about the served model."""

    model: str = Field(description="the served model's name")
    backend: str
    class_table: str = Field(description="the class table's name (`seg3d.classes`)")
    ignore_index: int = Field(description="the ignore class, which the service never answers")
    classes: list[ViewerClass] = Field(description="every class of the table, in label order")
    formats: list[ViewerFormat] = Field(description="the point formats `POST /segment` reads")
    max_points: int = Field(description="larger clouds are refused with 413")


@router.get(
    CONFIG_URL,
    tags=["viewer"],
    summary="The viewer's configuration: model name, classes with colours, point formats",
    dependencies=[Depends(require_auth)],
    responses=error_responses(
        {
            401: "unauthorized: missing or wrong bearer token (when auth is on)",
            503: "warming_up (see Retry-After) or model_unavailable",
        }
    ),
)
async def viewer_config(model: Model, state: State) -> ViewerConfig:
    # the table of `seg3d.classes` the model was trained for: the one palette the labelled answers use
    table = model.manifest.config.classes
    return ViewerConfig(
        model=model.name,
        backend=model.segmenter.backend.name,
        class_table=table.name,
        ignore_index=table.ignore_index,
        classes=[
            ViewerClass(index=i, name=name, colour=colour)
            for i, (name, colour) in enumerate(zip(table.names, table.colours, strict=True))
        ],
        formats=[ViewerFormat(value=f.value, description=f.description) for f in PointFormat],
        max_points=state.settings.max_points,
    )


def _page() -> HTMLResponse:
    # read per request (a few kB): an edited page shows on reload, without restarting the service
    return HTMLResponse((VIEWER_DIR / "index.html").read_text(encoding="utf-8"))


def install_viewer(app: FastAPI) -> None:
    """Serve the page at `VIEWER_URL`, its assets and three.js, and `CONFIG_URL`."""
    app.mount(VIEWER_ASSETS_URL, StaticFiles(directory=VIEWER_DIR), name="viewer")
    app.mount(THREE_URL, StaticFiles(directory=THREE_DIR), name="three")

    async def viewer_page() -> HTMLResponse:
        return _page()

    app.add_api_route(VIEWER_URL, viewer_page, methods=["GET"], include_in_schema=False)
    app.include_router(router)

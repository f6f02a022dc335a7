"""``/docs``: Swagger UI served from the package itself, so it works offline (no CDN).

FastAPI's built-in page loads Swagger UI's script and stylesheet from a CDN, which leaves it blank
on a host without internet access. The app is created with ``docs_url=None`` and ``redoc_url=None``
(ReDoc is not vendored), and `install_docs` adds FastAPI's documented replacement: the same page from
`fastapi.openapi.docs.get_swagger_ui_html`, pointing at the files of ``swagger-ui-dist`` vendored in
``serve/static/swagger-ui/`` (version and origin in its ``VENDORED.md``), plus the OAuth2 redirect
page FastAPI would add. Like FastAPI's own, these routes take no bearer token and work whatever the
model's state (also under ``--keep-up`` after a failed load). A line above Swagger UI links to the
web viewer (`serve.routes.viewer`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["DOCS_URL", "STATIC_DIR", "SWAGGER_UI_URL", "VIEWER_LINK_ID", "install_docs"]

#: The vendored assets, found next to this module (not through the working directory).
STATIC_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
DOCS_URL = "/docs"
#: Where `STATIC_DIR` is mounted.
SWAGGER_UI_URL = "/static/swagger-ui"
#: The ``id`` of the link to the viewer that `install_docs` adds above Swagger UI.
VIEWER_LINK_ID = "viewer-link"


def install_docs(app: FastAPI) -> None:
    """Serve `STATIC_DIR` at `SWAGGER_UI_URL` and Swagger UI at `DOCS_URL`, using only those files."""
    if not app.openapi_url:
        return
    openapi_url = app.openapi_url
    redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(SWAGGER_UI_URL, StaticFiles(directory=STATIC_DIR), name="swagger-ui")

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        # behind a proxy that strips a prefix, every URL of the page carries it (as FastAPI's does)
        root = request.scope.get("root_path", "").rstrip("/")
        assets = root + SWAGGER_UI_URL
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            # no request to validator.swagger.io either (`None` would mean Swagger UI's default)
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )
        return _with_viewer_link(page, f"{root}/")

    app.add_route(DOCS_URL, swagger_ui_html, include_in_schema=False)
    if redirect_url:

        async def swagger_ui_redirect(_: Request) -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)


def _with_viewer_link(page: HTMLResponse, viewer_url: str) -> HTMLResponse:
    """``page`` with a line linking to the viewer at the top of its body."""
    html = bytes(page.body).decode("utf-8")
    link = (
        f'<p id="{VIEWER_LINK_ID}" style="font-family: sans-serif; margin: 12px 20px">'
        f'<a href="{viewer_url}">Open the web viewer</a>: drop a point file, see it segmented in 3D.</p>'
    )
    if "<body>" not in html:  # FastAPI changed its page: fail loudly rather than drop the link
        raise RuntimeError("the Swagger UI page has no <body> tag to add the viewer link to")
    return HTMLResponse(html.replace("<body>", "<body>\n" + link, 1))

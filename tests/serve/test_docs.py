"""``/docs`` loads only from the service (vendored Swagger UI, no CDN), and the OpenAPI schema documents
the JSON of ``POST /segment`` (`SegmentResponse`) and the error shape, matching real responses."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.testclient import TestClient

from seg3d.manifest import load_manifest
from serve.app import create_app
from serve.docs import STATIC_DIR
from serve.local import start_local_server
from serve.schemas import ErrorResponse, ProtocolError, SegmentResponse, StageTimings
from serve.settings import ServeSettings
from tests.serve.conftest import Server

OCTET = {"Content-Type": "application/octet-stream"}
# a quoted literal in an inline script that looks like a URL: a path, or absolute with a host
_QUOTED_URL = re.compile(r"""(["'`])((?:https?:)?//[^"'`\s]*|/[^"'`\s]*)\1""")
# anything anywhere in the page that names a host
_HOST_URL = re.compile(r"""(?:https?:)?//[\w.\-:\[\]]+""", re.IGNORECASE)


class _Refs(HTMLParser):
    """The ``src``/``href`` of every tag, and the text of every inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs += [v for k, v in attrs if k in ("src", "href") and v]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.scripts.append(data)


def page_urls(html: str) -> list[str]:
    """Every URL the page refers to: tag attributes and quoted URL literals of its inline scripts."""
    refs = _Refs()
    refs.feed(html)
    urls = list(refs.attrs)
    for script in refs.scripts:
        urls += [m.group(2) for m in _QUOTED_URL.finditer(script)]
    return urls


def foreign_urls(html: str, base: str) -> list[str]:
    """URLs in the page (anywhere, also outside tags and scripts) that point to another host than
    ``base``'s: ``http(s)://other``, protocol-relative ``//cdn...``."""
    host = urlsplit(base).netloc
    found = [m.group(0) for m in _HOST_URL.finditer(html)]
    found += [u for u in page_urls(html) if u.startswith("//") or "://" in u]
    return [u for u in found if urlsplit(u).netloc.lower() != host.lower()]


def _expected_type(url: str, openapi_url: str) -> tuple[str, int]:
    """A plausible content type for ``url`` and its minimum size in bytes."""
    path = urlsplit(url).path
    if path == openapi_url:
        return "application/json", 1_000
    return {
        ".js": ("javascript", 100_000),
        ".css": ("text/css", 10_000),
        ".png": ("image/png", 100),
    }.get(Path(path).suffix, ("text/html", 200))


def check_docs_page(client: httpx.Client | TestClient, base: str) -> set[str]:
    """GET /docs; fail on any foreign URL, fetch every URL of the page; the paths fetched."""
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert not foreign_urls(html, base), f"/docs refers to other hosts: {foreign_urls(html, base)}"
    openapi_url = "/openapi.json"
    fetched = set()
    for url in page_urls(html):
        absolute = urljoin(f"{base}/docs", url)
        assert urlsplit(absolute).netloc == urlsplit(base).netloc, url
        response = client.get(absolute)
        kind, least = _expected_type(absolute, openapi_url)
        assert response.status_code == 200, (url, response.status_code, response.text[:200])
        assert kind in response.headers["content-type"], (url, response.headers["content-type"])
        assert len(response.content) >= least, (url, len(response.content))
        if kind == "image/png":
            assert response.content.startswith(b"\x89PNG")
        fetched.add(urlsplit(absolute).path)
    assert openapi_url in fetched, "the page does not load the OpenAPI schema"
    assert any(p.endswith(".js") for p in fetched) and any(p.endswith(".css") for p in fetched), fetched
    spec = client.get(openapi_url).json()
    assert spec["openapi"].startswith("3.") and "/segment" in spec["paths"]
    return fetched


def test_docs_load_everything_from_the_server_itself(server: Server) -> None:
    """Against the real uvicorn server: nothing from a CDN, every asset answers 200."""
    with server.client() as client:
        fetched = check_docs_page(client, server.url)
        assert {
            "/static/swagger-ui/swagger-ui-bundle.js",
            "/static/swagger-ui/swagger-ui.css",
            "/docs/oauth2-redirect",
        } <= fetched, fetched
        assert client.get("/redoc").status_code == 404  # ReDoc is off: it would load from a CDN


def test_the_check_rejects_fastapis_cdn_page() -> None:
    """The check above is not vacuous: FastAPI's default /docs (CDN script, stylesheet, favicon) fails."""
    default = get_swagger_ui_html(openapi_url="/openapi.json", title="t").body.decode()
    assert len(foreign_urls(default, "http://127.0.0.1:8000")) >= 3
    with TestClient(FastAPI()) as client, pytest.raises(AssertionError, match="other hosts"):
        check_docs_page(client, "http://testserver")


def test_docs_work_after_a_failed_load(tmp_path: Path) -> None:
    """``--keep-up`` with a model that cannot load: /docs and its assets still answer, from the
    package's folder (the server runs from the repository, the check asks for the files by URL)."""
    local = start_local_server(tmp_path, "--keep-up", "--log-level", "warning", wait="answering")
    try:
        with httpx.Client(base_url=local.url, timeout=30) as client:
            assert client.post("/segment", content=b"", headers=OCTET).status_code == 503
            check_docs_page(client, local.url)
    finally:
        local.stop()


def test_docs_need_no_token_and_ship_with_the_package(tmp_path: Path) -> None:
    assert STATIC_DIR.is_dir() and STATIC_DIR.is_absolute()
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "VENDORED.md"):
        assert (STATIC_DIR / name).is_file(), name
    settings = ServeSettings(model=tmp_path, auth_token="s3cret")
    with TestClient(create_app(settings)) as client:
        assert client.get("/v2/models/x").status_code in (401, 503)
        check_docs_page(client, "http://testserver")


# --- the response schema ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    with TestClient(create_app(ServeSettings(model=tmp_path_factory.mktemp("none")))) as client:
        return client.get("/openapi.json").json()


def test_openapi_documents_the_segment_response(spec: dict) -> None:
    responses = spec["paths"]["/segment"]["post"]["responses"]
    ok = responses["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SegmentResponse"}
    binary = ok["content"]["application/octet-stream"]["schema"]
    assert binary["format"] == "binary" and "uint8" in binary["description"]
    assert {"X-Num-Points", "X-Inference-Ms"} <= set(ok["headers"])
    schemas = spec["components"]["schemas"]
    model = schemas["SegmentResponse"]
    assert set(model["properties"]) == set(SegmentResponse.model_fields)
    assert set(model["required"]) == set(SegmentResponse.model_fields)
    assert all(p.get("description") for p in model["properties"].values()), model
    assert "crop" in model["properties"]["points_in_crop"]["description"]
    timing = schemas["StageTimings"]["properties"]
    assert set(timing) == {"parse", "preprocess", "inference", "postprocess", "total"}
    # every error, of every route, is documented with the service's error shape: the protocol's on /v2
    for path, operations in spec["paths"].items():
        shape = "ProtocolError" if path == "/v2" or path.startswith("/v2/") else "ErrorResponse"
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": f"#/components/schemas/{shape}"}, (path, method, status)
    assert "HTTPValidationError" not in schemas  # FastAPI's default 422 shape is not ours


def _cloud(server: Server, n: int, seed: int) -> bytes:
    """``n`` nuScenes points, a quarter of them well outside the model's crop."""
    bounds = np.asarray(load_manifest(server.model_dir).config.grid.point_range, np.float32)
    rng = np.random.default_rng(seed)
    points = np.zeros((n, 5), "<f4")
    points[:, :3] = rng.uniform(bounds[:, 0], bounds[:, 1], (n, 3))
    points[: n // 4, 0] = bounds[0, 1] + 50.0
    points[:, 3] = rng.uniform(0, 255, n)
    return points.tobytes()


def _matches_the_model(response: httpx.Response) -> SegmentResponse:
    """The response validates against `SegmentResponse` with exactly its keys: extra ones are
    forbidden by the model, missing ones compared here."""
    assert response.status_code == 200, response.text
    data = response.json()
    parsed = SegmentResponse.model_validate(data)
    assert set(data) == set(SegmentResponse.model_fields)
    assert parsed.model_dump(mode="json", exclude_unset=True) == data
    assert parsed.num_points == len(parsed.labels)
    return parsed


def test_a_real_response_matches_the_model(server: Server) -> None:
    body = _cloud(server, 4_000, seed=11)
    with server.client() as client:
        full = _matches_the_model(client.post("/segment", content=body, headers=OCTET))
        assert set(full.timing_ms.model_fields_set) == set(StageTimings.model_fields)
        assert full.num_points == 4_000 and 0 < full.points_in_crop <= 3_000
        assert full.class_names and max(full.labels) < len(full.class_names)
        empty = _matches_the_model(client.post("/segment", content=b"", headers=OCTET))
        assert empty.num_points == empty.points_in_crop == 0
        assert empty.timing_ms.model_fields_set == {"parse", "total"}
        # and the error shape
        refused = client.post("/segment", content=body, headers={"Content-Type": "text/plain"})
        assert refused.status_code == 415
        assert ErrorResponse.model_validate(refused.json()).error.code == "unsupported_media_type"
        unknown = client.get("/v2/models/other")
        assert unknown.status_code == 404
        # the KServe v2 paths answer in the protocol's shape
        assert ProtocolError.model_validate(unknown.json()).model_extra == {"served": ["tiny"]}

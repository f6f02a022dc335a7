"""The web viewer over HTTP: the page and every module it imports load from the service itself, the
configuration gives the served model's classes with the palette of `seg3d.classes`, three.js ships
with its licence and pinned version, and the page works with auth on (the page needs no token, the
configuration does). What the page does in a browser: `test_viewer_browser.py`."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.testclient import TestClient

from seg3d.classes import class_table
from seg3d.manifest import load_manifest
from seg3d.points import PointFormat
from serve.app import create_app
from serve.docs import VIEWER_LINK_ID
from serve.local import LocalServer, start_local_server
from serve.routes.viewer import CONFIG_URL, THREE_DIR, VIEWER_DIR
from serve.settings import ServeSettings
from tests.serve.conftest import Server
from tests.serve.test_docs import foreign_urls

TOKEN = "v13wer-s3cret"
# the specifiers of an ES module's static imports: `import ... from "x"`, `export ... from "x"` and
# `import "x"`, as statements at the start of a line (so that an example in a comment is not one)
_IMPORT = re.compile(
    r"""^(?:import|export)\b[^'"`;]*?\bfrom\s*(['"])([^'"]+)\1|^import\s*(['"])([^'"]+)\3""", re.M
)


class _Page(HTMLParser):
    """The ``src``/``href`` of every tag and the import map of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.module_scripts: list[str] = []
        self.import_map: dict[str, str] = {}
        self._in_import_map = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "script" and values.get("type") == "module" and values.get("src"):
            self.module_scripts.append(str(values["src"]))
        self._in_import_map = tag == "script" and values.get("type") == "importmap"

    def handle_endtag(self, tag: str) -> None:
        self._in_import_map = False

    def handle_data(self, data: str) -> None:
        if self._in_import_map:
            self.import_map.update(json.loads(data)["imports"])


def module_imports(source: str) -> list[str]:
    """The module specifiers a JavaScript module imports (statically)."""
    return [m.group(2) or m.group(4) for m in _IMPORT.finditer(source)]


def check_viewer_page(client: httpx.Client | TestClient, base: str) -> set[str]:
    """GET /, then every asset of the page and, transitively, every module the scripts import
    (bare names through the page's import map): each from ``base``'s host, each 200 with a fitting
    content type. The paths fetched."""
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert not foreign_urls(html, base), f"the viewer refers to other hosts: {foreign_urls(html, base)}"
    parsed = _Page()
    parsed.feed(html)
    page_url = f"{base}/"
    import_map = {name: urljoin(page_url, target) for name, target in parsed.import_map.items()}
    assert "three" in import_map, parsed.import_map
    fetched: set[str] = set()
    for url in parsed.urls:
        if url.startswith("data:"):
            continue
        absolute = urljoin(page_url, url)
        assert urlsplit(absolute).netloc == urlsplit(base).netloc, url
        response = client.get(absolute)
        assert response.status_code == 200, (url, response.status_code)
        fetched.add(urlsplit(absolute).path)
    modules = [urljoin(page_url, src) for src in parsed.module_scripts] + list(import_map.values())
    seen: set[str] = set()
    while modules:
        url = modules.pop()
        if url in seen:
            continue
        seen.add(url)
        assert urlsplit(url).netloc == urlsplit(base).netloc, url
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert "javascript" in response.headers["content-type"], (url, response.headers["content-type"])
        fetched.add(urlsplit(url).path)
        for specifier in module_imports(response.text):
            if specifier.startswith(("./", "../", "/")):
                modules.append(urljoin(url, specifier))
            else:  # a bare name resolves in a browser only through the import map
                assert specifier in import_map, f"{url} imports {specifier!r}, which the import map lacks"
                modules.append(import_map[specifier])
        assert not re.search(r"""\bimport\s*\(\s*['"](?:https?:)?//""", response.text), (
            f"{url}: import from a host"
        )
    return fetched


def test_the_module_check_reads_imports() -> None:
    """The import scan finds the forms the vendored files use (else the page check proves nothing)."""
    source = (
        "import * as THREE from \"three\";\nimport { a,\n b } from './x.js';\n"
        'export { c } from "./y.js";\nimport "./z.js";'
    )
    assert module_imports(source) == ["three", "./x.js", "./y.js", "./z.js"]
    # three.module.js imports from three.core.js and re-exports it
    assert set(module_imports((THREE_DIR / "three.module.js").read_text(encoding="utf-8"))) == {
        "./three.core.js"
    }
    assert module_imports((THREE_DIR / "OrbitControls.js").read_text(encoding="utf-8")) == ["three"]


def _page_app(html: str, modules: dict[str, str]) -> FastAPI:
    """An app serving ``html`` at / and each JavaScript module at its path."""
    app = FastAPI()
    app.add_api_route("/", lambda: HTMLResponse(html))
    for path, source in modules.items():
        app.add_api_route(path, lambda source=source: Response(source, media_type="text/javascript"))
    return app


@pytest.mark.parametrize(
    ("html", "modules", "complaint"),
    [
        # three.js from a CDN through the import map
        (
            '<script type="importmap">{"imports": {"three": "https://cdn.jsdelivr.net/npm/three"}}</script>'
            '<script type="module" src="app.js"></script>',
            {"/app.js": 'import * as THREE from "three";'},
            "other hosts",
        ),
        # a bare name the import map does not resolve: the browser would refuse the module
        (
            '<script type="importmap">{"imports": {"three": "./three.js"}}</script>'
            '<script type="module" src="app.js"></script>',
            {"/app.js": 'import { OrbitControls } from "three/addons/OrbitControls.js";', "/three.js": ""},
            "import map lacks",
        ),
        # a module that imports a file the server does not have
        (
            '<script type="importmap">{"imports": {"three": "./three.js"}}</script>'
            '<script type="module" src="app.js"></script>',
            {"/app.js": 'import "./missing.js";', "/three.js": ""},
            "404",
        ),
    ],
)
def test_the_page_check_rejects_broken_pages(html: str, modules: dict[str, str], complaint: str) -> None:
    """The check above is not vacuous."""
    with TestClient(_page_app(html, modules)) as client, pytest.raises(AssertionError, match=complaint):
        check_viewer_page(client, "http://testserver")


def test_the_page_and_every_module_load_from_the_server(server: Server) -> None:
    """Against the real uvicorn server: the page, its stylesheet, its scripts and every module they
    import (three.js included) answer 200 from the same host."""
    with server.client() as client:
        fetched = check_viewer_page(client, server.url)
        assert client.get("/docs").status_code == 200
    assert {
        "/static/viewer/viewer.css",
        "/static/viewer/viewer.js",
        "/static/viewer/ply.js",
        "/static/three/three.module.js",
        "/static/three/three.core.js",
        "/static/three/OrbitControls.js",
    } <= fetched, fetched


def test_the_configuration_is_the_served_models_class_table(server: Server) -> None:
    """Names and colours of every class from the model's table in `seg3d.classes`, the model's name
    as `/segment` reports it, and the formats `/segment` reads."""
    manifest = load_manifest(server.model_dir)
    table = class_table(manifest.config.dataset)
    with server.client() as client:
        config = client.get(CONFIG_URL)
        answer = client.post(
            "/segment",
            content=b"",
            headers={"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"},
        )
    assert config.status_code == 200, config.text
    data = config.json()
    assert data["model"] == answer.headers["x-model-name"] == manifest.model.name
    assert data["class_table"] == table.name and data["ignore_index"] == table.ignore_index
    assert [c["index"] for c in data["classes"]] == list(range(len(table)))
    assert [c["name"] for c in data["classes"]] == list(table.names) == manifest.classes.names
    assert [tuple(c["colour"]) for c in data["classes"]] == list(table.colours)
    assert [f["value"] for f in data["formats"]] == [f.value for f in PointFormat]
    assert data["max_points"] > 0 and data["backend"] == answer.headers["x-backend"]


def test_three_js_ships_with_its_licence_and_pinned_version(server: Server) -> None:
    """The licence is served beside the files; ``VENDORED.md`` names the version the files are (the
    build's own ``REVISION``) and their SHA-256, which match."""
    note = (THREE_DIR / "VENDORED.md").read_text(encoding="utf-8")
    version = re.search(r"three (\d+)\.(\d+)\.(\d+)", note)
    assert version, note[:200]
    revision = re.search(r"REVISION = '(\d+)'", (THREE_DIR / "three.core.js").read_text(encoding="utf-8"))
    assert revision and revision.group(1) == version.group(2), (version.group(0), revision)
    listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", note, re.M))
    shipped = {p.name for p in THREE_DIR.iterdir()} - {"VENDORED.md"}
    assert set(listed) == shipped, (sorted(listed), sorted(shipped))
    for name, digest in listed.items():
        assert hashlib.sha256((THREE_DIR / name).read_bytes()).hexdigest() == digest, name
    with server.client() as client:
        licence = client.get("/static/three/LICENSE")
    assert licence.status_code == 200
    assert "MIT License" in licence.text and "three.js authors" in licence.text


def test_docs_link_to_the_viewer(server: Server) -> None:
    with server.client() as client:
        docs = client.get("/docs").text
    link = re.search(rf'<p id="{VIEWER_LINK_ID}"[^>]*><a href="([^"]+)"', docs)
    assert link and link.group(1) == "/", docs[:500]


@pytest.fixture(scope="module")
def auth_server(tiny_export: Path) -> Iterator[LocalServer]:
    local = start_local_server(
        tiny_export, "--backend", "onnxruntime", "--log-level", "warning", env={"SEG_AUTH_TOKEN": TOKEN}
    )
    yield local
    local.stop()


def test_with_auth_on_the_page_loads_and_the_configuration_needs_the_token(auth_server: LocalServer) -> None:
    """The page and its assets take no token (a user opens it, then types the token in); the
    configuration, like the model metadata, answers 401 without the right one."""
    with httpx.Client(base_url=auth_server.url, timeout=60) as client:
        check_viewer_page(client, auth_server.url)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = client.get(CONFIG_URL, headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["error"]["code"] == "unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer"
        allowed = client.get(CONFIG_URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200 and allowed.json()["classes"]


def test_after_a_failed_load_the_page_still_answers(tmp_path: Path) -> None:
    """A folder that is no export: the page and its assets load (in-process app); the configuration
    answers 503 model_unavailable, which the page shows."""
    with TestClient(create_app(ServeSettings(model=tmp_path))) as client:
        check_viewer_page(client, "http://testserver")
        deadline = time.monotonic() + 30
        while (config := client.get(CONFIG_URL)).json()["error"]["code"] == "warming_up":
            assert time.monotonic() < deadline, "the load did not fail within 30 s"
            time.sleep(0.05)
    assert config.status_code == 503 and config.json()["error"]["code"] == "model_unavailable"


def test_the_viewer_files_are_in_the_package() -> None:
    """The page and its scripts are found next to the package (not through the working directory)."""
    assert VIEWER_DIR.is_absolute() and THREE_DIR.is_absolute()
    for name in ("index.html", "viewer.js", "ply.js", "viewer.css"):
        assert (VIEWER_DIR / name).is_file(), name

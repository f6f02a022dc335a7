"""The web viewer in a real headless browser (the system's Chromium through Playwright) against the real
uvicorn server: real nuScenes and KITTI scans uploaded through the page, the legend's counts equal to
the labels `/segment` answers for the same file, a hidden class's colour gone from the canvas's
pixels, no request leaving loopback, and the same with auth on.

Needs Chromium (Debian: ``apt-get install chromium``; ``$SEG3D_CHROMIUM`` names another binary) and
the ``playwright`` package, whose own browser downloads are not used; skipped without either, unless
``SEG3D_REQUIRE_BROWSER=1`` (CI), which turns a missing one into a failure.
The server serves the bundled demo model (`serve.settings.DEFAULT_MODEL_DIR`), not the tests' tiny
random-init export: that one labels nearly every point alike, and the pixel checks need a scan drawn in
several classes. With ``SEG3D_VIEWER_SCREENSHOT=docs/images/viewer.png`` the test also writes the
README's screenshot: the demo model on a real nuScenes sweep.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from seg3d.io import write_atomic
from seg3d.points import PointFormat
from seg3d.scans import RealScan, real_scans
from serve.local import LocalServer, start_local_server
from serve.settings import DEFAULT_MODEL_DIR

CHROMIUM = os.environ.get("SEG3D_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_ENV = "SEG3D_VIEWER_SCREENSHOT"
REQUIRED = bool(os.environ.get("SEG3D_REQUIRE_BROWSER"))
TOKEN = "br0wser-s3cret"
# WebGL without a GPU: ANGLE on SwiftShader, which recent Chromium only uses when told to; an sRGB
# output profile, so that screenshots keep the palette's bytes
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--force-color-profile=srgb"]
WAIT_MS = 180_000  # a render on a busy 2-core machine; the test fails with the page's status past it
BACKGROUND = (0xEC, 0xEE, 0xF1)  # viewer.js BACKGROUND

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED,
    reason="no Chromium installed (apt-get install chromium, or set SEG3D_CHROMIUM); CI installs it",
)
if REQUIRED:
    import playwright.sync_api as sync_api
else:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
    )


def _first_scans() -> dict[str, RealScan]:
    """The first real nuScenes sweep and KITTI scan, by kind."""
    found: dict[str, RealScan] = {}
    for scan in real_scans(("nuscenes", "kitti")):
        found.setdefault(scan.kind, scan)
    return found


SCANS = _first_scans()
needs_scans = pytest.mark.skipif(
    set(SCANS) != {"nuscenes", "kitti"},
    reason="the real nuScenes and KITTI scans are absent (../shared/data/real or $SEG3D_REAL_DATA)",
)
FORMAT_OF_KIND = {"nuscenes": PointFormat.NUSCENES, "kitti": PointFormat.KITTI}


def _demo_server(env: dict[str, str] | None = None) -> LocalServer:
    return start_local_server(
        DEFAULT_MODEL_DIR, "--backend", "onnxruntime", "--log-level", "warning", env=env
    )


@pytest.fixture(scope="module")
def demo_server() -> Iterator[LocalServer]:
    local = _demo_server()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def auth_server() -> Iterator[LocalServer]:
    local = _demo_server(env={"SEG_AUTH_TOKEN": TOKEN})
    yield local
    local.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    if CHROMIUM is None:
        pytest.fail("SEG3D_REQUIRE_BROWSER is set but no Chromium is installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Viewer:
    """A page of the viewer whose every request is recorded, and blocked unless it goes to 127.0.0.1."""

    page: sync_api.Page
    requests: list[sync_api.Request] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def state(self) -> str:
        return str(self.page.get_attribute("#view", "data-state"))

    def status(self) -> str:
        return str(self.page.text_content("#status"))

    def upload(self, name: str, data: bytes) -> None:
        """Choose a file in the page and wait until it is drawn or refused."""
        self.page.set_input_files("#file", files=[{"name": name, "mimeType": "", "buffer": data}])
        self.wait_done(name)

    def drop(self, name: str, data: bytes) -> None:
        """Drop a file on the page (a drop event carrying it, as a desktop drag does) and wait."""
        transfer = self.page.evaluate_handle(
            """([name, b64]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], name));
                return transfer;
            }""",
            [name, base64.b64encode(data).decode()],
        )
        self.page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        self.wait_done(name)

    def wait_done(self, name: str) -> None:
        self.page.wait_for_function(
            "name => { const v = document.querySelector('#view');"
            " return v.dataset.file === name && ['rendered', 'error'].includes(v.dataset.state); }",
            arg=name,
            timeout=WAIT_MS,
        )

    def legend(self) -> dict[int, int]:
        rows = self.page.eval_on_selector_all(
            "#legend tr[data-class]",
            "rows => rows.map(r => [Number(r.dataset.index), Number(r.dataset.count)])",
        )
        return dict(rows)

    def pixels(self) -> np.ndarray:
        """The canvas's drawing buffer, exactly (``toDataURL``: PNG, no compositing), as RGB."""
        url = self.page.eval_on_selector("#view canvas", "c => c.toDataURL('image/png')")
        png = base64.b64decode(url.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def toggle(self, index: int) -> None:
        self.page.click(f'#legend tr[data-index="{index}"] input')

    def foreign(self) -> list[str]:
        """Requests to anything but 127.0.0.1 (data: and blob: URLs are no requests on the network)."""
        urls = [r.url for r in self.requests]
        return [
            u
            for u in urls
            if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname != "127.0.0.1"
        ]


@pytest.fixture
def open_viewer(browser: sync_api.Browser) -> Iterator[Callable[[str], Viewer]]:
    contexts: list[sync_api.BrowserContext] = []

    def open_(url: str) -> Viewer:
        context = browser.new_context(viewport={"width": 900, "height": 560}, device_scale_factor=1)
        contexts.append(context)
        page = context.new_page()
        viewer = Viewer(page)
        context.on("request", lambda request: viewer.requests.append(request))

        def guard(route: sync_api.Route) -> None:
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                viewer.blocked.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page.goto(f"{url}/")
        return viewer

    yield open_
    for context in contexts:
        context.close()


def served_labels(url: str, data: bytes, fmt: PointFormat, token: str | None = None) -> np.ndarray:
    """The uint8 labels `/segment` answers for ``data`` (``Accept: application/octet-stream``)."""
    headers = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    answer = httpx.post(
        f"{url}/segment", params={"format": fmt.value}, content=data, headers=headers, timeout=120
    )
    assert answer.status_code == 200, answer.text
    return np.frombuffer(answer.content, np.uint8)


def colour_counts(pixels: np.ndarray) -> dict[tuple[int, int, int], int]:
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    return {(int(r), int(g), int(b)): int(n) for (r, g, b), n in zip(colours, counts, strict=True)}


def check_render(
    viewer: Viewer, labels: np.ndarray, palette: list[tuple[int, int, int]]
) -> set[tuple[int, int, int]]:
    """The legend counts the labels; the canvas holds only the background and the palette colours of
    the classes present, exactly (no blending or colour conversion). Those colours."""
    assert viewer.state() == "rendered", viewer.status()
    assert int(str(viewer.page.get_attribute("#view", "data-points"))) == labels.size
    legend = viewer.legend()
    assert [legend[i] for i in range(len(palette))] == np.bincount(labels, minlength=len(palette)).tolist()
    present = {palette[i] for i in np.unique(labels)}
    drawn = colour_counts(viewer.pixels())
    assert BACKGROUND not in palette
    assert set(drawn) <= present | {BACKGROUND}, set(drawn) - present - {BACKGROUND}
    assert len(set(drawn) & present) >= 2, drawn
    return present | {BACKGROUND}


def check_hiding_a_class(viewer: Viewer, palette: list[tuple[int, int, int]]) -> None:
    """The class with the most pixels: unticked, its colour leaves the canvas and the others stay;
    ticked again, the same picture comes back."""
    before = colour_counts(viewer.pixels())
    drawn = {c: n for c, n in before.items() if c != BACKGROUND}
    colour = max(drawn, key=lambda c: drawn[c])
    assert palette.count(colour) == 1, "the check needs a colour of one class only"
    index = palette.index(colour)
    viewer.toggle(index)
    assert viewer.page.get_attribute(f'#legend tr[data-index="{index}"]', "data-visible") == "false"
    hidden = colour_counts(viewer.pixels())
    assert colour not in hidden, f"{colour} still drawn after hiding class {index}"
    assert set(drawn) - {colour} <= set(hidden), "other classes disappeared too"
    viewer.toggle(index)
    assert colour_counts(viewer.pixels()) == before


def check_view_controls(viewer: Viewer, allowed: set[tuple[int, int, int]]) -> None:
    """A drag (orbit), a shift-drag (pan) and the wheel (zoom) each move the picture, and Reset view
    brings the first one back; bird's-eye changes it (still only ``allowed`` colours); a larger point
    size covers more pixels; back to the first view, the first picture."""
    perspective = viewer.pixels()
    box = viewer.page.locator("#view canvas").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    mouse, keyboard = viewer.page.mouse, viewer.page.keyboard
    for modifier in (None, "Shift"):
        latest = viewer.pixels()
        if modifier:
            keyboard.down(modifier)
        mouse.move(x, y)
        mouse.down()
        mouse.move(x + 60, y + 25, steps=5)
        mouse.up()
        if modifier:
            keyboard.up(modifier)
        assert not np.array_equal(viewer.pixels(), latest), (
            f"a {modifier or 'plain'} drag did not move the view"
        )
    latest = viewer.pixels()
    mouse.move(x, y)
    mouse.wheel(0, -400)
    # the wheel event reaches the page asynchronously: poll the picture, up to a few seconds
    for _ in range(50):
        if not np.array_equal(viewer.pixels(), latest):
            break
        viewer.page.wait_for_timeout(100)
    else:
        pytest.fail("the wheel did not zoom")
    viewer.page.click("#reset")
    assert np.array_equal(viewer.pixels(), perspective)
    viewer.page.click("#birdseye")
    assert viewer.page.get_attribute("#view", "data-camera") == "birdseye"
    above = viewer.pixels()
    assert not np.array_equal(perspective, above)
    assert set(colour_counts(above)) <= allowed
    covered = int((above != BACKGROUND).any(axis=2).sum())
    set_point_size(viewer, 5)
    assert int((viewer.pixels() != BACKGROUND).any(axis=2).sum()) > covered
    set_point_size(viewer, 2)
    viewer.page.click("#birdseye")
    assert viewer.page.get_attribute("#view", "data-camera") == "perspective"
    assert np.array_equal(viewer.pixels(), perspective)


def set_point_size(viewer: Viewer, size: int) -> None:
    viewer.page.eval_on_selector(
        "#point-size",
        "(el, size) => { el.value = String(size); el.dispatchEvent(new Event('input')); }",
        size,
    )


def palette_of(viewer: Viewer) -> list[tuple[int, int, int]]:
    rows = viewer.page.eval_on_selector_all(
        "#legend tr[data-class]", "rows => rows.map(r => r.dataset.colour.split(',').map(Number))"
    )
    return [(r, g, b) for r, g, b in rows]


@needs_scans
def test_the_viewer_segments_and_draws_real_scans(
    demo_server: LocalServer, open_viewer: Callable[[str], Viewer], tmp_path: Path
) -> None:
    viewer = open_viewer(demo_server.url)
    viewer.page.wait_for_function("document.querySelector('#format').options.length > 1", timeout=WAIT_MS)
    config = httpx.get(f"{demo_server.url}/viewer/config.json", timeout=30).json()
    # the page guesses formats from names as the server's reader does
    names = [scan.path.name for scan in SCANS.values()] + [
        "a.pcd",
        "b.PLY",
        "c.bin",
        "d.pcd.bin",
        "e.txt",
        "f",
    ]
    guessed = viewer.page.evaluate("names => names.map(n => window.segViewer.formatForName(n))", names)
    expected = [None if (f := PointFormat.for_path(Path(n))) is None else f.value for n in names]
    assert guessed == expected
    for kind, scan in SCANS.items():
        data = scan.path.read_bytes()
        viewer.upload(scan.path.name, data)
        assert viewer.page.get_attribute("#view", "data-format") == FORMAT_OF_KIND[kind].value
        labels = served_labels(demo_server.url, data, FORMAT_OF_KIND[kind])
        assert labels.size == scan.points.shape[0]
        palette = palette_of(viewer)
        assert palette == [tuple(c["colour"]) for c in config["classes"]]
        allowed = check_render(viewer, labels, palette)
        check_hiding_a_class(viewer, palette)
        assert re.fullmatch(r"\d+ ms", str(viewer.page.text_content("#t-round-trip")))
        assert re.fullmatch(r"\d+(\.\d+)? ms", str(viewer.page.text_content("#t-inference")))
        shot = tmp_path / f"viewer-{kind}.png"
        viewer.page.screenshot(path=str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG")
    check_view_controls(viewer, allowed)
    # dropped, with a name the format cannot be told from: refused in the page, then drawn once a
    # format is chosen
    nuscenes = SCANS["nuscenes"].path.read_bytes()
    viewer.drop("sweep.data", nuscenes)
    assert viewer.state() == "error" and "choose one under Format" in viewer.status()
    viewer.page.select_option("#format", "nuscenes")
    viewer.wait_done("sweep.data")
    palette = palette_of(viewer)
    check_render(viewer, served_labels(demo_server.url, nuscenes, PointFormat.NUSCENES), palette)
    # an error answer of the service is shown with its status, code and message
    refused = httpx.post(
        f"{demo_server.url}/segment",
        params={"format": "kitti"},
        content=b"\0" * 7,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    ).json()["error"]
    viewer.page.select_option("#format", "")
    viewer.upload("broken.bin", b"\0" * 7)
    assert viewer.state() == "error"
    assert viewer.page.get_attribute("#status", "data-status") == "422"
    assert viewer.page.get_attribute("#status", "data-code") == refused["code"]
    assert viewer.status() == f"422 {refused['code']}: {refused['message']}"

    assert not viewer.foreign() and not viewer.blocked, viewer.foreign() + viewer.blocked
    paths = {urlsplit(r.url).path for r in viewer.requests}
    assert {"/static/three/three.core.js", "/static/three/OrbitControls.js", "/viewer/config.json"} <= paths
    segment = [r for r in viewer.requests if urlsplit(r.url).path == "/segment"]
    assert len(segment) == len(SCANS) + 2
    assert all(r.headers["accept"] == "application/x-ply" and r.method == "POST" for r in segment)


@needs_scans
def test_the_viewer_with_auth_on(auth_server: LocalServer, open_viewer: Callable[[str], Viewer]) -> None:
    """Without the token the page says so (401 and the service's message); with it typed into the
    Token field, the same file is drawn, and every request to the service carries it."""
    viewer = open_viewer(auth_server.url)
    viewer.page.wait_for_function(
        "document.querySelector('#status').dataset.status === '401'", timeout=WAIT_MS
    )
    assert "token" in viewer.status()
    scan = SCANS["nuscenes"]
    data = scan.path.read_bytes()
    viewer.upload(scan.path.name, data)
    assert viewer.state() == "error"
    assert viewer.page.get_attribute("#status", "data-status") == "401"
    assert "unauthorized" in viewer.status() and "bearer token" in viewer.status()
    viewer.page.fill("#token", TOKEN)
    first = len(viewer.requests)
    viewer.page.click("#again")
    viewer.wait_done(scan.path.name)
    labels = served_labels(auth_server.url, data, PointFormat.NUSCENES, token=TOKEN)
    check_render(viewer, labels, palette_of(viewer))
    to_service = [
        r for r in viewer.requests[first:] if urlsplit(r.url).path in ("/segment", "/viewer/config.json")
    ]
    assert to_service and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in to_service)
    # a wrong token: /segment itself refuses, and the page says so
    viewer.page.fill("#token", "wrong")
    viewer.page.click("#again")
    viewer.wait_done(scan.path.name)
    assert viewer.state() == "error" and viewer.page.get_attribute("#status", "data-status") == "401"
    assert viewer.status() == "401 unauthorized: missing or wrong bearer token"
    assert viewer.requests[-1].headers.get("authorization") == "Bearer wrong"
    assert urlsplit(viewer.requests[-1].url).path == "/segment"
    assert not viewer.foreign() and not viewer.blocked


@pytest.mark.skipif(
    not os.environ.get(SCREENSHOT_ENV), reason=f"writes the README screenshot when {SCREENSHOT_ENV} is set"
)
@needs_scans
def test_readme_screenshot(demo_server: LocalServer, open_viewer: Callable[[str], Viewer]) -> None:
    """The bundled demo model on the first real nuScenes sweep, written to ``$SEG3D_VIEWER_SCREENSHOT``
    as a small PNG (900 x 560, re-compressed losslessly)."""
    out = Path(os.environ[SCREENSHOT_ENV])
    viewer = open_viewer(demo_server.url)
    scan = SCANS["nuscenes"]
    viewer.upload(scan.path.name, scan.path.read_bytes())
    assert viewer.state() == "rendered", viewer.status()
    assert not viewer.foreign() and not viewer.blocked
    png = viewer.page.screenshot()
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buffer, format="PNG", optimize=True)
    assert buffer.tell() < 150_000, f"{buffer.tell()} bytes: too large for the README"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buffer.getvalue())

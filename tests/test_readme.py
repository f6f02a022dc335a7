"""The README's command blocks, as `.ci/newcomer.py` reads them (the job itself runs in `.ci/run`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def newcomer() -> ModuleType:
    # `.ci` is not a package; load the script by path (a dataclass needs its module registered).
    spec = importlib.util.spec_from_file_location("ci_newcomer", ROOT / ".ci" / "newcomer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_markers_belong_to_the_next_block_only(newcomer: ModuleType) -> None:
    text = (
        "<!-- newcomer: skip: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n```bash\necho a\n```\n"
        "```text\nnot a command\n```\n<!-- newcomer: background http://127.0.0.1:9/ -->\n"
        "```bash\nserve\n```\n```python\nprint(1)\n```\n"
    )
    blocks = newcomer.readme_blocks(text)
    assert [(b.lang, b.body.strip(), b.marker) for b in blocks] == [
        ("bash", "nvidia-smi", "skip: needs a GPU"),
        ("bash", "echo a", ""),
        ("bash", "serve", "background http://127.0.0.1:9/"),
        ("python", "print(1)", ""),
    ]


def test_every_block_runs_or_says_why_not(newcomer: ModuleType) -> None:
    for block in newcomer.readme_blocks((ROOT / "README.md").read_text()):
        kind, _, rest = block.marker.partition(":")
        if kind == "skip":
            assert len(rest.strip()) > 20, f"{block.title}: a skip needs its reason"
        elif block.marker.startswith("background"):
            assert block.marker.split()[1].startswith("http://127.0.0.1:"), block.title
        else:
            assert block.marker == "", f"{block.title}: unknown marker {block.marker!r}"


def test_the_user_path_runs_in_order(newcomer: ModuleType) -> None:
    """Install and serve, query, data, training, evaluation, export, serving the export: in order."""
    run = [b for b in newcomer.readme_blocks((ROOT / "README.md").read_text()) if b.marker[:4] != "skip"]
    text = "\n".join(b.body for b in run)
    steps = [
        "pip install",
        "python -m serve",
        "training.data.synthetic.sample",
        "/segment",
        "python -m training.data.synthetic --out",
        "python -m training.train",
        "python -m training.evaluate",
        "export/to_trt.py --checkpoint",
        "python -m serve --model exports/",
    ]
    positions = [text.find(step) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions), dict(zip(steps, positions, strict=True))
    assert run[0].marker.startswith("background") and "pip install" in run[0].body


def test_readme_needs_nothing_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "../shared/docs" not in readme


def test_a_server_already_answering_fails_the_background_block(
    newcomer: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server left over from an earlier run would answer for the block's own: refused."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        block = newcomer.Block(1, 10, "bash", "sleep 30\n", f"background {url}")
        assert newcomer.run_blocks([block], tmp_path, tmp_path, timeout_s=5) == 1
    finally:
        server.shutdown()
    assert "answers before the block starts" in capsys.readouterr().out

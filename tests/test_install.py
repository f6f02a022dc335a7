"""The README's install command gets the CPU build of torch on any fresh machine.

pip resolves the command exactly as the README writes it, with none of this machine's pip
configuration (``--isolated``: no config files, no ``PIP_*`` variables, so no local wheel folder),
and the report must hold no CUDA package. From PyPI alone the pinned torch pulls the NVIDIA CUDA
libraries (the control test shows it); the command's ``--extra-index-url`` names PyTorch's CPU wheel
index, whose ``+cpu`` build of the same version sorts above PyPI's and has no CUDA dependencies.

Where PyTorch's index cannot be reached (this CI reaches PyPI only), a local PEP 503 index holding
the very wheel that index serves (``torch-<pin>+cpu-*.whl``, found in this machine's pip
``find-links``) stands in at the same place in the command. Everything else still resolves
against the real PyPI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPI = "https://pypi.org/simple/"


def readme_install_args() -> list[str]:
    """The arguments after ``pip install`` in the README's first command block."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block, "README has no bash block"
    for part in block.group(1).split("&&"):
        words = shlex.split(part)
        if "pip" in Path(words[0]).name and words[1] == "install":
            return words[2:]
    raise AssertionError("the README's first command block has no pip install")


def _torch_pin() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"torch==([^"]+)"', text)
    assert match, "pyproject.toml pins no torch version"
    return match.group(1)


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _pip_env() -> dict[str, str]:
    # No PIP_* variable reaches pip (``--isolated`` ignores them too; this makes it plain).
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}


def _cert_args() -> list[str]:
    """The CA bundle this machine's pip uses, if any (a TLS detail, not a package source)."""
    cert = os.environ.get("PIP_CERT")
    if not cert:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.cert"], capture_output=True, text=True
        )
        cert = out.stdout.strip() if out.returncode == 0 else ""
    return ["--cert", cert] if cert else []


def _local_cpu_wheel(version: str) -> Path | None:
    """``torch-<version>+cpu-*.whl`` in this machine's pip find-links folders."""
    folders = os.environ.get("PIP_FIND_LINKS", "").split()
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True
    )
    folders += out.stdout.split() if out.returncode == 0 else []
    for folder in folders:
        for wheel in sorted(Path(folder.removeprefix("file://")).glob(f"torch-{version}+cpu-*.whl")):
            return wheel
    return None


def _stand_in_index(wheel: Path, root: Path) -> str:
    """A PEP 503 index with one project, torch, holding ``wheel``; returns its file URL."""
    project = root / "torch"
    project.mkdir(parents=True)
    (project / wheel.name).symlink_to(wheel)
    href = wheel.name.replace("+", "%2B")
    (project / "index.html").write_text(f'<html><body><a href="{href}">{wheel.name}</a></body></html>\n')
    return root.as_uri() + "/"


def _resolve(args: list[str], report: Path) -> list[dict]:
    """``pip install --dry-run --report`` of ``args`` from the repository root; the packages."""
    pip = [sys.executable, "-m", "pip", "install", "--isolated", "--disable-pip-version-check", *_cert_args()]
    command = [*pip, "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), *args]
    done = subprocess.run(command, cwd=ROOT, env=_pip_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(report.read_text())["install"])


def _cuda_packages(install: list[dict]) -> list[str]:
    names = [item["metadata"]["name"].lower() for item in install]
    return [n for n in names if n.startswith(("nvidia-", "cuda-")) or n == "triton"]


@pytest.fixture(scope="module")
def pypi() -> None:
    if not _reachable(PYPI):
        pytest.skip("PyPI cannot be reached from here")


def test_readme_install_command_pulls_no_cuda_package(pypi: None, tmp_path: Path) -> None:
    args = readme_install_args()
    assert "--extra-index-url" in args, "the install command names no CPU wheel index"
    index = args[args.index("--extra-index-url") + 1]
    assert index.rstrip("/").endswith("/whl/cpu"), index
    pin = _torch_pin()
    if not _reachable(index.rstrip("/") + "/torch/"):
        wheel = _local_cpu_wheel(pin)
        if wheel is None:
            pytest.skip(f"{index} cannot be reached and no local torch-{pin}+cpu wheel stands in for it")
        args[args.index(index)] = _stand_in_index(wheel, tmp_path / "cpu-index")
    install = _resolve(args, tmp_path / "report.json")
    assert _cuda_packages(install) == []
    torch = [item["metadata"]["version"] for item in install if item["metadata"]["name"].lower() == "torch"]
    assert torch == [f"{pin}+cpu"]
    # PyPI really was the other source: the rest of the stack came from it.
    urls = [item["download_info"]["url"] for item in install if item["metadata"]["name"].lower() == "numpy"]
    assert urls and urls[0].startswith("https://files.pythonhosted.org/"), urls


def test_pypi_alone_pulls_cuda_for_the_pinned_torch(pypi: None, tmp_path: Path) -> None:
    """The control: why the index option is there, and proof that the check above can fail."""
    install = _resolve([f"torch=={_torch_pin()}"], tmp_path / "report.json")
    assert _cuda_packages(install), "PyPI's torch no longer pulls CUDA: the index option may be unneeded"

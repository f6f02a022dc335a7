"""The newcomer job: a fresh clone, nothing beside it, every README command block run as written.

Clones the repository into an empty temporary folder (so no `../shared` data and no venv exist
beside it) and runs the README's ```bash and ```python blocks in the order they appear, each from
the clone's root: bash blocks with ``bash -euo pipefail``, python blocks with the clone's
``.venv/bin/python``. A block runs unless an HTML comment on the line before it says otherwise:

- ``<!-- newcomer: skip: REASON -->``: not run (hardware or data this job cannot have); the reason
  is printed, so every skip is visible in the CI log.
- ``<!-- newcomer: background URL -->``: a block that starts a server and does not return. It is
  started, the job waits until ``URL`` answers 200 (failing if the block exits first), and it keeps
  running until the job ends.

Any block that exits non-zero fails the job, with the tail of its output. Standard library only:
it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(
    r"(?:<!--\s*newcomer:\s*(?P<marker>.*?)\s*-->\n)?```(?P<lang>bash|python)\n(?P<body>.*?)```", re.S
)


@dataclass(frozen=True)
class Block:
    number: int
    line: int
    lang: str
    body: str
    marker: str

    @property
    def title(self) -> str:
        first = self.body.strip().splitlines()[0] if self.body.strip() else ""
        return f"block {self.number} (README line {self.line}, {self.lang}): {first[:90]}"


def readme_blocks(readme: str) -> list[Block]:
    """Every ```bash and ```python block of the README, with its newcomer marker."""
    blocks = []
    for number, match in enumerate(BLOCK.finditer(readme), start=1):
        line = readme.count("\n", 0, match.start("lang")) + 1
        blocks.append(Block(number, line, match["lang"], match["body"], match["marker"] or ""))
    return blocks


def _command(block: Block, root: Path) -> list[str]:
    if block.lang == "bash":
        return ["bash", "-euo", "pipefail", "-c", block.body]
    return [str(root / ".venv" / "bin" / "python"), "-c", block.body]


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def run_blocks(blocks: list[Block], root: Path, logs: Path, timeout_s: float) -> int:
    background: list[subprocess.Popen[bytes]] = []
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "SEG3D_REAL_DATA"}}
    try:
        for block in blocks:
            if block.marker.startswith("skip"):
                reason = block.marker.partition(":")[2].strip()
                print(f"SKIP {block.title}\n     reason: {reason}", flush=True)
                continue
            log = logs / f"block-{block.number:02d}.log"
            if block.marker.startswith("background") and _ready(block.marker.split(maxsplit=1)[1]):
                # something else already answers there (a server left over from an earlier run):
                # its answers would pass for this block's
                url = block.marker.split(maxsplit=1)[1]
                why = "answers before the block starts: stop that server"
                print(f"FAIL {block.title}\n     {url} {why}", flush=True)
                return 1
            start = time.monotonic()
            with log.open("wb") as out:
                process = subprocess.Popen(
                    _command(block, root), cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: the whole tree is stopped at the end
                )  # fmt: skip
            if block.marker.startswith("background"):
                url = block.marker.split(maxsplit=1)[1]
                background.append(process)
                while not _ready(url):
                    if process.poll() is not None or time.monotonic() - start > timeout_s:
                        why = "exited" if process.poll() is not None else f"not ready after {timeout_s:.0f} s"
                        print(f"FAIL {block.title}\n     {why} ({url})\n{_tail(log)}", flush=True)
                        return 1
                    time.sleep(1)
                print(f"UP   {block.title}  [{time.monotonic() - start:.0f} s, {url}]", flush=True)
                continue
            try:
                code = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = -1
            seconds = time.monotonic() - start
            if code != 0:
                print(f"FAIL {block.title}\n     exit {code} after {seconds:.0f} s\n{_tail(log)}", flush=True)
                return 1
            print(f"OK   {block.title}  [{seconds:.0f} s]", flush=True)
        return 0
    finally:
        for process in background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="repository to clone (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the clone and the logs afterwards")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per block (default 900)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="newcomer-"))
    root, logs = work / "repo", work / "logs"
    logs.mkdir()
    subprocess.run(["git", "clone", "--quiet", str(args.repo), str(root)], check=True)
    blocks = readme_blocks((root / "README.md").read_text())
    print(f"newcomer: {len(blocks)} README blocks, clone in {root}", flush=True)
    start = time.monotonic()
    code = run_blocks(blocks, root, logs, args.timeout)
    print(f"newcomer: {'passed' if code == 0 else 'FAILED'} in {time.monotonic() - start:.0f} s", flush=True)
    if args.keep or code != 0:
        print(f"newcomer: clone and logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

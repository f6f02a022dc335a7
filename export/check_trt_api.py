"""Check that a TensorRT Python bindings wheel has every name `tensorrt_build.py` uses.

    pip download --no-deps -d /tmp/trt tensorrt-cu12-bindings==10.16.1.11 tensorrt-cu12-bindings==11.4.0.106
    python export/check_trt_api.py /tmp/trt/*.whl

The bindings wheels are small and on PyPI, unlike the builder libraries, but they do not import
without those libraries. So this reads the compiled module's string table instead. A pybind11
name is stored as a C string; the linker may share the tail of a longer string, so a name counts
as present when some string ends with it.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

from export.tensorrt_build import TRT_API_NAMES


def missing_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        modules = [n for n in archive.namelist() if re.search(r"tensorrt[^/]*\.so$", n)]
        if not modules:
            raise ValueError(f"{wheel}: no tensorrt*.so inside")
        blob = b"".join(archive.read(n) for n in modules)
    strings = set(re.findall(rb"[A-Za-z_][A-Za-z0-9_]{2,}(?=\x00)", blob))
    return [name for name in TRT_API_NAMES if not any(s.endswith(name.encode()) for s in strings)]


def main(argv: list[str] | None = None) -> int:
    wheels = [Path(a) for a in (argv if argv is not None else sys.argv[1:])]
    if not wheels:
        print(__doc__)
        return 2
    failed = False
    for wheel in wheels:
        missing = missing_names(wheel)
        failed |= bool(missing)
        verdict = f"MISSING {', '.join(missing)}" if missing else f"all {len(TRT_API_NAMES)} names present"
        print(f"{wheel.name}: {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

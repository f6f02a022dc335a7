from __future__ import annotations

import pytest

from seg3d.helptext import plain


def test_markup_is_dropped_and_the_words_kept() -> None:
    doc = "``python -m seg3d``: check `seg3d.points` and ``--scan``.\n\nSecond paragraph with `x`."
    assert plain(doc) == "python -m seg3d: check seg3d.points and --scan.\n\nSecond paragraph with x."
    assert plain(doc, first_paragraph=True) == "python -m seg3d: check seg3d.points and --scan."
    assert plain(None) == ""


@pytest.mark.parametrize(
    "module",
    [
        "seg3d.cli",
        "training.train",
        "training.evaluate",
        "training.demo",
        "training.experiments",
        "training.describe",
    ],
)
def test_command_help_has_no_markup(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "`" not in out and "usage:" in out

"""The investigation notebooks run top to bottom on demo data and show what they promise."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from detector.config import Settings
from detector.demo import run_demo
from detector.store.db import make_engine, make_sessionmaker
from detector.store.projects import list_projects

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

EXPECTED = {
    "what_did_this_deploy_do.ipynb": ["web@1.2.0", "map is not a function", "instrumentation", "Dana Whitfield"],
    "one_signature.ipynb": ["map is not a function", "first seen", "events by release", "mean share of sessions"],
    "tune_the_detector.ipynb": ["new_signature", "time to detect the new signature", "floor_rate"],
}


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("notebook-demo")
    url = f"sqlite:///{work / 'demo.db'}"
    run_demo(Settings(database_url=url), workdir=work, echo=lambda _line: None)
    return url


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def test_notebooks_are_stored_without_outputs() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(EXPECTED)
    for path in NOTEBOOKS.glob("*.ipynb"):
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


def _run(path: Path) -> nbformat.NotebookNode:
    """Execute the notebook at `path` with its folder as the kernel's working directory, as Jupyter does."""
    book = nbformat.read(path, as_version=4)
    NotebookClient(
        book, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return book


def _assert_shows_what_it_promises(name: str, book: nbformat.NotebookNode) -> None:
    text = "\n".join(_text(c) for c in book.cells if c.cell_type == "code")
    for expected in EXPECTED[name]:
        assert expected in text, f"{name} did not show {expected!r}"
    assert any("image/png" in o.get("data", {}) for c in book.cells for o in c.get("outputs", [])) or name.startswith(
        "tune"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_on_demo_data(name: str, demo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_DATABASE_URL", demo_url)
    _assert_shows_what_it_promises(name, _run(NOTEBOOKS / name))


def test_notebooks_run_on_the_readme_path_without_a_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jupyter lab notebooks/` with no DETECTOR_DATABASE_URL: the demo's ./detector.db of the checkout is
    used, and created by the first notebook when `detector demo` has not run yet."""
    monkeypatch.delenv("DETECTOR_DATABASE_URL", raising=False)
    monkeypatch.delenv("DETECTOR_PROJECT", raising=False)
    checkout = tmp_path / "checkout"
    shutil.copytree(NOTEBOOKS, checkout / "notebooks")
    assert not (checkout / "detector.db").exists()
    for name in sorted(EXPECTED):
        _assert_shows_what_it_promises(name, _run(checkout / "notebooks" / name))
    assert (checkout / "detector.db").is_file()
    engine = make_engine(f"sqlite:///{checkout / 'detector.db'}")
    try:
        with make_sessionmaker(engine)() as session:
            # the first notebook replayed the demo once; the other two read that same project
            assert [p.slug for p in list_projects(session)] == ["shop"]
    finally:
        engine.dispose()

"""The import direction the README's "Layout" section promises, checked on the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.imports import imports_in

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = {"valuation", "serving", "steps", "bench", "tests"}

# folder -> top-level packages it must not import. The model runtime ships inside the model, so
# it reaches nothing of the project (not even the rest of valuation) and no Hydra.
MUST_NOT_IMPORT = {
    "valuation/model_runtime": PROJECT_PACKAGES | {"hydra", "omegaconf"},
    "valuation": {"serving", "steps", "bench", "tests"},
    "steps": {"serving", "bench", "tests"},
    "serving": {"steps", "bench", "tests"},
}


@pytest.mark.parametrize("folder", sorted(MUST_NOT_IMPORT))
def test_imports_go_one_way(folder: str) -> None:
    wrong = [f"{found.file.relative_to(ROOT)}:{found.line} imports {found.module}"
             for found in imports_in(ROOT / folder)
             if found.level == 0 and found.top in MUST_NOT_IMPORT[folder]]
    assert wrong == []


def test_the_model_runtime_reaches_nothing_outside_itself_by_relative_import() -> None:
    runtime = ROOT / "valuation" / "model_runtime"
    escaping = [f"{found.file.relative_to(ROOT)}:{found.line}" for found in imports_in(runtime)
                if found.level > len(found.file.relative_to(runtime).parts)]
    assert escaping == []


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    (tmp_path / "module.py").write_text("def later():\n    from serving.app import app\n")
    assert [(found.line, found.top) for found in imports_in(tmp_path)] == [(2, "serving")]

"""The shared contracts: the one atomic write, and the vocabularies every package speaks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from contracts import vocabulary as v
from contracts.files import atomic_write, atomic_write_text


def test_atomic_write_replaces_whole_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "cat.fits.gz"
    seen = []
    atomic_write(target, lambda tmp: (seen.append(tmp), tmp.write_text("one")))
    assert target.read_text() == "one"
    assert seen[0].name == target.name and seen[0].parent.parent == target.parent  # the name writers may read
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda tmp: (tmp.write_text("half"), (_ for _ in ()).throw(RuntimeError("disk full"))))
    assert target.read_text() == "one"  # the old content, whole
    assert [p.name for p in target.parent.iterdir()] == ["cat.fits.gz"]  # no temporary file or folder left


def test_torch_weights_written_atomically_are_the_bytes_of_a_direct_write(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    state = {"w": torch.arange(4.0)}
    torch.save(state, tmp_path / "direct.pt")
    (tmp_path / "a").mkdir()
    torch.save(state, tmp_path / "a" / "model.pt")
    atomic_write(tmp_path / "model.pt", lambda tmp: torch.save(state, tmp))
    assert (tmp_path / "model.pt").read_bytes() == (tmp_path / "a" / "model.pt").read_bytes()


def test_two_writers_at_once_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    temps: list[Path] = []
    barrier = threading.Barrier(2)

    def write(text: str) -> None:
        def body(tmp: Path) -> None:
            temps.append(tmp)
            tmp.write_text(text)
            barrier.wait(timeout=5)  # both temporary files exist at the same time

        atomic_write(target, body)

    threads = [threading.Thread(target=write, args=(t,)) for t in ("a" * 1000, "b" * 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(temps)) == 2
    assert target.read_text() in ("a" * 1000, "b" * 1000)
    assert atomic_write_text(target, "c") == target and target.read_text() == "c"


def test_vocabularies_are_consistent() -> None:
    assert set(v.SURVEY_CLASSES) <= set(v.KINDS) and set(v.MICROSCOPY_CLASSES) <= set(v.KINDS)
    assert v.PROB_COLUMNS == tuple(f"p_{k}" for k in v.KINDS)
    assert v.LABEL_VALUES == (*v.KINDS, v.UNCERTAIN)
    assert set(v.PROB_COLUMNS) <= set(v.LABEL_COLUMN_NAMES)
    assert "triage_stratum" in v.LABEL_COLUMN_NAMES and "p_nucleus" in v.LABEL_COLUMN_NAMES
    assert set(v.CLASSES_BY_MODE) == set(v.MODES)
    assert v.EXPERT_NAMES == (*v.SURVEY_EXPERTS, *v.MICROSCOPY_EXPERTS)


def test_every_package_speaks_the_one_vocabulary() -> None:
    """The registry, the gate's evidence, the configuration and the review app use these tuples."""
    from moe_imaging.experts import REGISTRY
    from moe_imaging.triage.survey_features import EVIDENCE
    from review.web.app import RELABEL_CLASSES  # noqa: F401 - importable without the core

    assert set(REGISTRY) == set(v.EXPERT_NAMES)
    assert tuple(EVIDENCE) == v.SURVEY_EXPERTS


def test_the_contracts_import_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, contracts, contracts.files, contracts.vocabulary; "
            "heavy = [m for m in ('torch', 'astropy', 'scipy', 'pandas', 'moe_imaging', 'dask') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"

"""`records.ResultsFile` and `records.save`: which record of a cell a results file keeps, and runs that
write into one file at the same time."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from diffbrain import _atomic
from diffbrain.bench import records

SIM_CELL = dict(
    suite="sim", case="n=4000/T=0.2s", method="brian2.runtime", metric="wall_time_per_bio_s", params="n=4000"
)


def _measured(value: float, **fields) -> records.Record:
    return records.make_record(value=value, unit="s", repeats=2, **(SIM_CELL | fields))


def _skipped(reason: str, **fields) -> records.Record:
    return records.skipped(unit="s", reason=reason, **(SIM_CELL | fields))


def _saved(folder, suite: str = "sim") -> list[tuple]:
    frame = records.read_csv(folder / f"{suite}.csv")
    return sorted(
        zip(frame.case, frame.method, frame.status, frame.value.fillna(-1), frame.note, strict=True)
    )


def test_a_skipped_record_never_replaces_a_measured_one(tmp_path):
    """Review: `bench sim` rerun without the peer's interpreter replaced brian2's measured wall time with a
    NaN "skipped" record (the measurement lost, its compile time kept beside a NaN)."""
    records.save([_measured(1.9)], tmp_path)
    records.save([_skipped("brian2 is not installed")], tmp_path)
    assert _saved(tmp_path) == [("n=4000/T=0.2s", "brian2.runtime", "ok", 1.9, "")]
    records.save([_measured(2.5)], tmp_path)  # a newer measurement replaces the older one
    assert _saved(tmp_path) == [("n=4000/T=0.2s", "brian2.runtime", "ok", 2.5, "")]


def test_a_skipped_record_replaces_a_skipped_one(tmp_path):
    records.save([_skipped("nest is not installed", method="nest")], tmp_path)
    records.save([_skipped("nest timed out", method="nest")], tmp_path)
    assert _saved(tmp_path) == [("n=4000/T=0.2s", "nest", "skipped", -1, "nest timed out")]
    records.save([_measured(3.0, method="nest")], tmp_path)
    assert _saved(tmp_path) == [("n=4000/T=0.2s", "nest", "ok", 3.0, "")]


def test_a_measured_record_survives_a_skipped_one_added_later_in_the_same_run(tmp_path):
    results = records.ResultsFile(tmp_path, "sim")
    results.add([_measured(1.9)])
    results.add([_skipped("timed out")])
    assert _saved(tmp_path) == [("n=4000/T=0.2s", "brian2.runtime", "ok", 1.9, "")]


def _fit(case: str, value: float) -> records.Record:
    return records.make_record("fit", case, "lbfgs", "wall_time", value, "s")


def test_two_runs_into_one_file_keep_each_others_cases(tmp_path):
    """Review: `bench fit --problems A` and `--problems B` at once into one folder: each run read the file
    once at its start, so whichever saved last dropped every case of the other."""
    run_a, run_b = records.ResultsFile(tmp_path, "fit"), records.ResultsFile(tmp_path, "fit")
    run_a.add([_fit("problem-A", 1.0)])
    run_b.add([_fit("problem-B", 2.0)])
    run_a.add([_fit("problem-A2", 3.0)])
    assert [case for case, *_ in _saved(tmp_path, "fit")] == ["problem-A", "problem-A2", "problem-B"]


def test_add_waits_for_the_lock_another_writer_holds(tmp_path):
    """The file is re-read and rewritten under an exclusive lock of its sibling lock file, so a run that
    writes meanwhile is not overwritten with what the file held before."""
    results = records.ResultsFile(tmp_path, "fit")
    finished = threading.Event()
    with open(results.lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run, saving (flock: per open file, so this conflicts)
        writer = threading.Thread(target=lambda: (results.add([_fit("problem-A", 1.0)]), finished.set()))
        writer.start()
        time.sleep(0.5)
        assert not finished.is_set() and not results.path.exists()
        records.write_csv([_fit("problem-B", 2.0)], results.path)  # what the other run saves meanwhile
        fcntl.flock(lock, fcntl.LOCK_UN)
    writer.join(10)
    assert finished.is_set()
    assert [case for case, *_ in _saved(tmp_path, "fit")] == ["problem-A", "problem-B"]
    assert sorted(path.name for path in tmp_path.glob("*.csv")) == ["fit.csv"]


def test_a_lock_file_this_user_cannot_open_is_refused_before_the_run(tmp_path, monkeypatch):
    """Another user's lock file made under umask 077 (0600): refused when the results file is opened, not
    after the first case is measured, with what to do about it."""
    (tmp_path / ".sim.csv.lock").touch()
    real_open = os.open

    def unreadable(path, flags, *mode):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *mode)

    monkeypatch.setattr(_atomic.os, "open", unreadable)
    with pytest.raises(ValueError, match=r"cannot lock .*\.sim\.csv\.lock.*Permission denied.*chmod a\+r"):
        records.ResultsFile(tmp_path, "sim")


def test_a_results_folder_is_made_by_the_first_add_not_before(tmp_path):
    """Review: a run refused after its results file was opened (by its own options) left the empty folder
    behind; the folder is checked when the file is opened, made when the first records are saved."""
    results = records.ResultsFile(tmp_path / "new" / "nested", "fit")
    assert not list(tmp_path.iterdir())
    results.add([_fit("problem-A", 1.0)])
    assert [case for case, *_ in _saved(tmp_path / "new" / "nested", "fit")] == ["problem-A"]


def test_an_empty_folder_name_is_refused(tmp_path, monkeypatch):
    """Review: ``--out ''`` wrote ./<suite>.csv into the current folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        records.ResultsFile("", "fit")
    assert not list(tmp_path.iterdir())


def test_opening_a_new_folder_never_removes_one_another_run_has_made(tmp_path, monkeypatch):
    """Review: opening a new folder made it and removed it again; another run starting at the same moment
    could have its folder removed between its mkdir and its lock (1–7 of 600 paired starts failed). The
    check makes nothing, so it removes nothing."""
    folder = tmp_path / "new"
    made = []
    real_mkdir = Path.mkdir

    def other_run_makes_it_first(self, *args, **kwargs):  # the other run's mkdir lands in between
        made.append(self)
        real_mkdir(folder, exist_ok=True)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", other_run_makes_it_first)
    monkeypatch.setattr(os, "rmdir", lambda path, *a, **k: pytest.fail(f"removed {path}"))
    records.ResultsFile(folder, "fit")
    assert not made, "opening the results file made a folder"


def test_a_new_folder_under_an_unwritable_one_is_refused(tmp_path, monkeypatch):
    """The folder is not made when the file is opened, but one that could not be made is still refused."""
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: os.fspath(path) != os.fspath(tmp_path))
    with pytest.raises(ValueError, match=r"cannot write the results into .*new.*writable folder"):
        records.ResultsFile(tmp_path / "new" / "nested", "fit")
    assert not list(tmp_path.iterdir())


def test_a_results_folder_that_is_a_dangling_link_is_refused_before_the_run(tmp_path):
    """Review s23: a new folder is checked, not made, so a dangling symlink (or one on the way to the
    folder) passed the check and failed at the first add, after the first case was measured."""
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for folder in (tmp_path / "link", tmp_path / "link" / "sub"):
        with pytest.raises(ValueError, match=r"is a link to .*nowhere.*, which does not exist"):
            records.ResultsFile(folder, "fit")


def test_an_existing_folder_where_no_file_can_be_made_is_refused(tmp_path, monkeypatch):
    """An existing folder is checked by making a file in it; a folder that refuses one (here a
    PermissionError) is named, with the reason, before any case is measured."""

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(records.tempfile, "TemporaryFile", refused)
    with pytest.raises(
        ValueError, match=r"cannot write the results into .*: Permission denied; give a writable"
    ):
        records.ResultsFile(tmp_path, "fit")

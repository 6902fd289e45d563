"""A job's private directory: made fresh, and removed whatever the command left in it."""

from __future__ import annotations

import os
from pathlib import Path

from worker.workspace import JobDirectory, remove_abandoned, remove_tree, workspace


def nest(top: Path, depth: int) -> None:
    """``depth`` directories, one inside the other (as a pushed tree or a command can make)."""
    top.mkdir()
    descriptor = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):  # relative steps: the whole path would pass PATH_MAX
            os.mkdir("d", dir_fd=descriptor)
            inner = os.open("d", os.O_RDONLY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = inner
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=descriptor), "w") as handle:
            handle.write("x")
    finally:
        os.close(descriptor)


def test_a_tree_nested_thousands_deep_is_removed(tmp_path: Path) -> None:
    deep = tmp_path / "deep"
    nest(deep, 3000)  # past Python's recursion limit and PATH_MAX
    assert remove_tree(deep)
    assert not deep.exists()


def test_a_workspace_is_private_and_gone_afterwards(tmp_path: Path) -> None:
    with workspace(str(tmp_path)) as job_dir:
        assert isinstance(job_dir, JobDirectory)
        assert job_dir.root.stat().st_mode & 0o777 == 0o700
        job_dir.checkout.mkdir()
        (job_dir.checkout / "locked").mkdir()
        (job_dir.checkout / "locked" / "f").write_text("x")
        (job_dir.checkout / "locked").chmod(0)
    assert not job_dir.root.exists()


def test_a_dead_jobs_directory_is_removed_however_deep_and_a_live_one_kept(
    tmp_path: Path,
) -> None:
    dead = tmp_path / "ghapp-job-999999999-x"
    nest(dead, 1500)
    live = tmp_path / f"ghapp-job-{os.getpid()}-y"
    live.mkdir()
    assert remove_abandoned(str(tmp_path)) == [dead]
    assert not dead.exists()
    assert live.exists()

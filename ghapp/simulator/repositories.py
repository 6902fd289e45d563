"""Git plumbing against the simulator's bare repositories: create, commit, resolve, inspect."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

ZERO_SHA = "0" * 40
AUTHOR_NAME = "The Octocat"
AUTHOR_EMAIL = "octocat@users.noreply.github.com"
AUTHOR_LOGIN = "octocat"

_UPLOAD_PACK_CONFIG = """\
[uploadpack]
\tallowAnySHA1InWant = true
\tallowReachableSHA1InWant = true
[http]
\treceivepack = false
"""
_LOG_FIELDS = ("%H", "%T", "%P", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B")
_LOG_FORMAT = "%x1f".join(_LOG_FIELDS)


class GitError(RuntimeError):
    """A git command the simulator ran failed."""


@dataclass(frozen=True)
class CommitInfo:
    """What a push payload says about one commit."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    authored_at: str
    committer_name: str
    committer_email: str
    committed_at: str
    message: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()


def git_env() -> dict[str, str]:
    """The process environment minus anything that could point git somewhere else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
    )
    return env


def run_git(git_dir: Path, *args: str, stdin: bytes | None = None, check: bool = True) -> bytes:
    """Run ``git --git-dir=git_dir args...`` and return its stdout."""
    proc = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args],
        input=stdin,
        capture_output=True,
        env=git_env(),
        check=False,
    )
    if check and proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip()
        raise GitError(f"git {args[0]} failed ({proc.returncode}): {detail}")
    return proc.stdout


def init_bare(path: Path, default_branch: str) -> None:
    """Create a bare repository whose HEAD names ``default_branch``, fetchable by any sha."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_git(path, "init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path))
    with (path / "config").open("a", encoding="utf-8") as config:
        config.write(_UPLOAD_PACK_CONFIG)


def resolve(git_dir: Path, revision: str) -> str | None:
    """The commit sha ``revision`` names, or None if it names no commit."""
    out = run_git(
        git_dir, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", check=False
    )
    sha = out.decode().strip()
    return sha or None


def branches_at(git_dir: Path, sha: str) -> list[str]:
    """The names of the branches whose tip is ``sha``, sorted."""
    out = run_git(git_dir, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
    prefix = "refs/heads/"
    return sorted(
        ref[len(prefix) :]
        for tip, _, ref in (line.partition(" ") for line in out.decode().splitlines())
        if tip == sha and ref.startswith(prefix)
    )


def is_ancestor(git_dir: Path, ancestor: str, descendant: str) -> bool:
    proc = subprocess.run(
        ["git", f"--git-dir={git_dir}", "merge-base", "--is-ancestor", ancestor, descendant],
        capture_output=True,
        env=git_env(),
        check=False,
    )
    return proc.returncode == 0


def write_commit(
    git_dir: Path,
    ref: str,
    parent: str | None,
    files: Mapping[str, str | bytes],
    delete: Iterable[str],
    message: str,
) -> str:
    """Commit ``files`` (added or overwritten) and ``delete`` on top of ``parent`` as ``ref``.

    One ``git fast-import`` run writes the blobs, tree and commit and moves the ref.
    The caller serialises commits to the same repository.
    """
    stamp = f"{int(time.time())} +0000"
    identity = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}> {stamp}"
    stream = bytearray()
    stream += f"commit {ref}\nmark :1\nauthor {identity}\ncommitter {identity}\n".encode()
    stream += _data(message.encode())
    if parent:
        stream += f"from {parent}\n".encode()
    for path in delete:
        stream += b"D " + _quote(_checked_path(path)) + b"\n"
    for path, content in files.items():
        blob = content.encode() if isinstance(content, str) else bytes(content)
        stream += b"M 100644 inline " + _quote(_checked_path(path)) + b"\n" + _data(blob)
    stream += b"\nget-mark :1\n"
    out = run_git(git_dir, "fast-import", "--quiet", stdin=bytes(stream))
    return out.decode().strip()


def commits_between(
    git_dir: Path, after: str, exclude: Iterable[str], limit: int = 20
) -> list[CommitInfo]:
    """Commits reachable from ``after`` but not from ``exclude`` (rev-list arguments), oldest
    first, at most ``limit`` (the newest ones), with their added/removed/modified paths."""
    out = run_git(
        git_dir,
        "log",
        "-z",
        f"--format={_LOG_FORMAT}",
        f"--max-count={limit}",
        "--reverse",
        after,
        "--not",
        *exclude,
        "--",
    )
    return [_with_changes(git_dir, _parse_log_record(r)) for r in out.decode().split("\0") if r]


def commit_info(git_dir: Path, sha: str) -> CommitInfo:
    out = run_git(git_dir, "log", "-z", "-1", f"--format={_LOG_FORMAT}", sha, "--")
    return _with_changes(git_dir, _parse_log_record(out.decode().rstrip("\0")))


def _parse_log_record(record: str) -> CommitInfo:
    sha, tree, parents, an, ae, ad, cn, ce, cd, body = record.split("\x1f", 9)
    return CommitInfo(
        sha=sha.strip(),
        tree=tree,
        parents=tuple(parents.split()),
        author_name=an,
        author_email=ae,
        authored_at=ad,
        committer_name=cn,
        committer_email=ce,
        committed_at=cd,
        message=body.rstrip("\n"),
    )


def _with_changes(git_dir: Path, info: CommitInfo) -> CommitInfo:
    base = [info.parents[0]] if info.parents else ["--root"]
    out = run_git(
        git_dir, "diff-tree", "-r", "-z", "--no-commit-id", "--name-status", *base, info.sha
    )
    parts = out.decode(errors="surrogateescape").split("\0")
    added: list[str] = []
    removed: list[str] = []
    modified: list[str] = []
    for status, path in zip(parts[0::2], parts[1::2], strict=False):
        if status.startswith("A"):
            added.append(path)
        elif status.startswith("D"):
            removed.append(path)
        elif status:
            modified.append(path)
    return replace(info, added=tuple(added), removed=tuple(removed), modified=tuple(modified))


def _data(payload: bytes) -> bytes:
    return f"data {len(payload)}\n".encode() + payload + b"\n"


def _checked_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..", ".git") for p in parts):
        raise ValueError(f"invalid repository path {path!r}")
    return path


def _quote(path: str) -> bytes:
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return b'"' + escaped.encode() + b'"'

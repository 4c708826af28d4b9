"""An on-disk cache of built directories (exported and quantized OpenVINO IR, locally built stand-in models)
that never trusts a partial entry.

An entry is built in a temporary sibling directory and renamed into place only after a manifest listing every
file with its size has been written; a lookup checks the manifest against the files. A process killed
mid-build leaves only a `.tmp-*` directory, which the next start deletes, and a truncated file fails the size
check and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .system_info import package_versions

log = logging.getLogger(__name__)

MANIFEST = "cache-manifest.json"
KEY_LIBRARIES = ("openvino", "optimum-intel", "nncf", "diffusers", "transformers", "torch", "tomesd")


def cache_key(model_id: str, revision: str, variant: str) -> str:
    """Model id + revision + variant + library versions -> a readable, unique directory name."""
    blob = json.dumps([model_id, revision, variant, package_versions(KEY_LIBRARIES)], sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{model_id}-{variant}")[-60:]
    return f"{readable}-{digest}"


def files_mb(path, suffixes: tuple[str, ...] = ()) -> float:
    """Size of the files under `path` (only those ending in one of `suffixes`, when given), in MB."""
    total = 0
    for root, _dirs, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in names if not suffixes or f.endswith(suffixes))
    return total / 2**20


class BuildCache:
    """Directories under `root`, one per key, each built once by a caller-supplied function."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob("*.tmp-*"):  # left by a process that died while building
            if not _pid_alive(stale.name.rsplit("-", 1)[-1]):
                shutil.rmtree(stale, ignore_errors=True)

    @classmethod
    def ir(cls, cache_dir: Path) -> BuildCache:
        """Exported and quantized OpenVINO IR."""
        return cls(Path(cache_dir) / "ir")

    @classmethod
    def standins(cls, cache_dir: Path) -> BuildCache:
        """Random-weight stand-in models."""
        return cls(Path(cache_dir) / "standins")

    def lookup(self, key: str) -> Path | None:
        """The entry's directory if it is complete and intact; otherwise delete it and return None."""
        entry = self.root / key
        if not entry.exists():
            return None
        problem = _verify(entry)
        if problem is None:
            return entry
        log.warning("cache entry %s is unusable (%s); rebuilding it", entry, problem)
        shutil.rmtree(entry, ignore_errors=True)
        return None

    def get_or_build(self, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """Return (entry dir, hit?). `build(tmp_dir)` writes the entry's files into `tmp_dir`.

        Several processes may share the cache (replicas of a Space on one Storage Bucket): a lock file makes
        the others wait for a build and then find it; where the file system has no locks, the first complete
        entry renamed into place wins and a later one is dropped."""
        entry = self.lookup(key)
        if entry is not None:
            return entry, True
        with _locked(self.root / f"{key}.lock"):
            entry = self.lookup(key)  # built by another process while this one waited
            if entry is not None:
                return entry, True
            return self._build(key, build), False

    def _build(self, key: str, build: Callable[[Path], None]) -> Path:
        entry = self.root / key
        tmp = self.root / f"{key}.tmp-{secrets.token_hex(4)}-{os.getpid()}"  # the pid last: see __init__
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            files = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
            if not files:
                raise RuntimeError("the build wrote no files")
            (tmp / MANIFEST).write_text(json.dumps({"files": files}, indent=1))
            if self.lookup(key) is None:  # removes a broken entry; keeps a complete one another process renamed
                try:
                    tmp.rename(entry)
                except OSError:  # renamed by another process between the lookup and here: keep theirs
                    if self.lookup(key) is None:
                        raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return entry


@contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (flock), released on exit; a no-op where the file system refuses locks."""
    import fcntl

    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:
            log.warning("no lock on %s (%s): relying on atomic renames", path, exc)
        yield


def _verify(entry: Path) -> str | None:
    try:
        files = json.loads((entry / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError) as exc:
        return f"no readable manifest: {exc}"
    for name, size in files.items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, expected {size}"
    return None


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True

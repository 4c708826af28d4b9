"""An on-disk cache of built directories (exported and quantized OpenVINO IR, locally built stand-in models)
that never trusts a partial entry.

An entry is built in a temporary sibling directory and renamed into place only after a manifest listing every
file with its size has been written; a lookup checks the manifest against the files, so a truncated file fails
the size check and is rebuilt.

Replicas of a Space may share the cache (a Storage Bucket) from separate containers, where process ids mean
nothing. So a build holds a lease: a `<temporary directory>.lease` file whose modification time it renews while it
works. A temporary directory whose lease went stale (or that never got one) is a dead build and is removed by
whoever finds it; one with a live lease is never touched, and a replica that wants the same entry waits for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .naming import slug
from .probes import package_versions

log = logging.getLogger(__name__)

MANIFEST = "cache-manifest.json"
LEASE_RENEW_S = 10.0  # how often a build touches its lease
LEASE_STALE_S = 120.0  # a lease untouched this long belongs to a dead build (12 missed renewals)
KEY_LIBRARIES = ("openvino", "optimum-intel", "nncf", "diffusers", "transformers", "torch", "tomesd")


def cache_key(model_id: str, revision: str, variant: str) -> str:
    """Model id + revision + variant + library versions -> a readable, unique directory name."""
    blob = json.dumps([model_id, revision, variant, package_versions(KEY_LIBRARIES)], sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return f"{slug(f'{model_id}-{variant}', limit=60)}-{digest}"


class BuildCache:
    """Directories under `root`, one per key, each built once by a caller-supplied function."""

    def __init__(self, root: Path, lease_renew_s: float | None = None, lease_stale_s: float | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # SBS_LEASE_*: for tests that kill builders and must not wait two minutes.
        self.lease_renew_s = lease_renew_s or float(os.environ.get("SBS_LEASE_RENEW_S", LEASE_RENEW_S))
        self.lease_stale_s = lease_stale_s or float(os.environ.get("SBS_LEASE_STALE_S", LEASE_STALE_S))
        self.remove_dead_builds()

    def remove_dead_builds(self) -> list[Path]:
        """Delete the temporary directories of builds whose lease went stale; return them."""
        removed = []
        for tmp in self.root.glob("*.tmp-*"):
            if tmp.name.endswith(".lease") or self._lease_alive(tmp):
                continue
            log.warning("removing %s: a build that stopped renewing its lease (a dead process or container)", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            _lease(tmp).unlink(missing_ok=True)
            removed.append(tmp)
        for lease in self.root.glob("*.tmp-*.lease"):  # a lease whose directory is gone
            if not lease.with_suffix("").exists() and not self._fresh(lease):
                lease.unlink(missing_ok=True)
        return removed

    def _fresh(self, path: Path) -> bool:
        try:
            return time.time() - path.stat().st_mtime < self.lease_stale_s
        except OSError:
            return False

    def _lease_alive(self, tmp: Path) -> bool:
        # The lease is written before its directory: a directory without one is either being created this instant
        # (then it is new) or was left by a dead build.
        return self._fresh(_lease(tmp)) or (not _lease(tmp).exists() and self._fresh(tmp))

    def builds_in_progress(self, key: str) -> list[Path]:
        """Temporary directories of `key` whose builder is alive (in this container or another)."""
        building = [tmp for tmp in self.root.glob(f"{key}.tmp-*") if not tmp.name.endswith(".lease")]
        return [tmp for tmp in building if self._lease_alive(tmp)]

    def discard(self, entry: Path, why: str) -> None:
        """Move a complete entry that turned out unusable (its IR fails to load) aside, so the next lookup rebuilds
        it; the copy is kept for a look until the next one replaces it."""
        for older in self.root.glob(f"{entry.name}.damaged-*"):
            shutil.rmtree(older, ignore_errors=True)
        aside = self.root / f"{entry.name}.damaged-{secrets.token_hex(4)}"
        log.warning("cache entry %s is damaged (%s); moved to %s and rebuilt", entry, why, aside)
        try:
            entry.rename(aside)
        except OSError:  # already moved by another replica
            pass

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
            while True:
                entry = self.lookup(key)  # built by another process while this one waited
                if entry is not None:
                    return entry, True
                self.remove_dead_builds()
                if not self.builds_in_progress(key):  # a live build elsewhere (no common lock): wait for it
                    break
                time.sleep(self.lease_renew_s)
            return self._build(key, build), False

    def _build(self, key: str, build: Callable[[Path], None]) -> Path:
        entry = self.root / key
        tmp = self.root / f"{key}.tmp-{secrets.token_hex(4)}"
        lease = _lease(tmp)
        lease.touch()
        stop = threading.Event()
        renewer = threading.Thread(target=_renew, args=(lease, stop, self.lease_renew_s), name="lease", daemon=True)
        renewer.start()
        try:
            tmp.mkdir(parents=True)
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
            stop.set()
            renewer.join()
            lease.unlink(missing_ok=True)
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


def _lease(tmp: Path) -> Path:
    return tmp.with_name(tmp.name + ".lease")


def _renew(lease: Path, stop: threading.Event, every_s: float) -> None:
    """Touch `lease` every `every_s` seconds until `stop` is set: the build is alive while this runs."""
    while not stop.wait(every_s):
        try:
            os.utime(lease)
        except OSError:
            lease.touch()

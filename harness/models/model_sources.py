"""Where the weights come from: a Hub id, a local diffusers directory, or a locally built stand-in
(`harness.models.standins`), resolved to a local diffusers directory every row loads the same way."""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.files import write_json
from harness.models.standins import STANDIN_REVISION, STANDINS, standin_path

log = logging.getLogger(__name__)

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
HUB_PROBE_TIMEOUT_S = 5.0  # how long we wait to learn the Hub is unreachable before falling back


@dataclass(frozen=True)
class ModelSource:
    """A local diffusers directory every backend loads from, and where it came from."""

    requested: str  # what the user asked for (CLI flag / env var)
    model_id: str  # hub id, local path or stand-in name actually loaded
    path: Path  # local diffusers directory (model_index.json inside)
    revision: str  # hub commit, STANDIN_REVISION, or "local-<content hash>"; part of every cache key
    standin: bool  # random weights: images are noise, latencies are real
    fallback_reason: str | None = None  # set when `requested` could not be loaded and we fell back to tiny


class ModelUnavailable(RuntimeError):
    """The requested model cannot be loaded (and strict mode forbids the fallback)."""


def resolve_model(requested: str, cache_dir: Path, strict: bool = False, progress=lambda _line: None) -> ModelSource:
    """Turn a model setting into a local directory, building a stand-in or downloading from the Hub.

    An unreachable, uncached Hub model falls back to `tiny` (with the reason recorded) unless `strict`.
    """
    if requested in STANDINS:
        progress(f"building or reading the {requested!r} stand-in")
        return ModelSource(requested, requested, standin_path(requested, cache_dir), STANDIN_REVISION, standin=True)
    local = Path(requested).expanduser()
    if local.is_dir():
        if not (local / "model_index.json").is_file():
            raise ModelUnavailable(f"{local} is not a diffusers model directory (no model_index.json)")
        progress(f"reading {local} (its content keys the IR cache)")
        return ModelSource(requested, str(local), local.resolve(), local_revision(local, cache_dir), standin=False)
    try:
        path, revision = _from_hub(requested, progress)
    except Exception as exc:  # network, auth, missing repo: all mean "cannot load it here"
        reason = f"could not load {requested!r} from the Hugging Face Hub ({type(exc).__name__}: {exc})"
        if strict:
            raise ModelUnavailable(reason) from exc
        log.warning("%s; falling back to the 'tiny' stand-in", reason)
        progress("the Hub is unreachable: building or reading the 'tiny' stand-in")
        return ModelSource(requested, "tiny", standin_path("tiny", cache_dir), STANDIN_REVISION, True, reason)
    return ModelSource(requested, requested, path, revision, standin=False)


def local_revision(path: Path, cache_dir: Path | None = None) -> str:
    """A revision for a local model directory (a mounted model repository, say), from its content: the bytes of
    every config, tokenizer and weight file, so changed weights get new IR and a remount (new modification times)
    does not. Hashing SD-1.5's 5.5 GB takes seconds, so each file's digest is remembered in `cache_dir` under its
    path, size, modification time and inode; nothing is ever written beside the model (it may be read-only)."""
    memo_path = Path(cache_dir) / "local-file-digests.json" if cache_dir else None
    try:
        memo = json.loads(memo_path.read_text()) if memo_path else {}
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json", ".txt"):
            stat = f.stat()
            key = f"{f.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
            if key not in memo:
                memo[key] = _file_digest(f)
            digest.update(f"{f.relative_to(path)}:{memo[key]}".encode())
    if memo_path:
        try:
            write_json(memo_path, memo)
        except OSError as exc:  # a read-only cache costs the next start the hashing, nothing else
            log.warning("could not remember file digests in %s: %s", memo_path, exc)
    return "local-" + digest.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _from_hub(repo_id: str, progress=lambda _line: None) -> tuple[Path, str]:
    """Download (or find in the cache) what `from_pretrained` needs, chosen by diffusers itself: the component
    weights without fp16/non-EMA variants or root single-file checkpoints (SD-1.5: ~5.5 GB of its ~40 GB)."""
    from diffusers import DiffusionPipeline
    from huggingface_hub import HfApi

    try:  # cached already: no network at all
        path = DiffusionPipeline.download(repo_id, local_files_only=True)
    except Exception:
        # One quick metadata call tells us whether the Hub is reachable, instead of a time-out per file.
        info = HfApi().model_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S)
        log.info("downloading %s at %s", repo_id, info.sha)
        with _reporting_download_size(repo_id, progress):
            path = DiffusionPipeline.download(repo_id, revision=info.sha)
    return Path(path), Path(path).name  # snapshot folders are named after the commit


@contextmanager
def _reporting_download_size(repo_id: str, progress):
    """Report every 2 s how much of `repo_id` is in the Hub cache (finished and partial files alike)."""
    import threading

    from huggingface_hub.constants import HF_HUB_CACHE

    blobs = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "blobs"
    done = threading.Event()

    def report():
        while not done.wait(2.0):
            size = sum(f.stat().st_size for f in blobs.glob("*") if f.is_file()) if blobs.is_dir() else 0
            progress(f"downloading {repo_id}: {size / 1e9:.2f} GB so far")

    thread = threading.Thread(target=report, name="download-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()

"""What the real SD-1.5 repository changes: the files downloaded (diffusers' own selection, checked against the
repository's recorded file list) and the work inside every row's timed call (no safety checker in any of them)."""

from __future__ import annotations

import fnmatch
import json
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import TINY_SIZE, ready_or_skip

from backends import backend_class, backend_ids
from core.cpu import this_cpu
from core.probes import component_weights_mb
from core.request import initial_latents

SD15 = json.loads((Path(__file__).parent / "data" / "sd15-repository-files.json").read_text())


def test_download_selects_the_component_weights_only(monkeypatch, tmp_path):
    """Run the product's download against a Hub that serves SD-1.5's recorded file list: what diffusers selects
    is every component's weights (~5.5 GB), no fp16/non-EMA variant, no root single-file checkpoint (~40 GB)."""
    import diffusers.pipelines.pipeline_utils as pipeline_utils
    import huggingface_hub

    from harness.models import model_sources

    repo, sha = SD15["repository"], "1d0c4ebf6ff58a5caecab40fa1406526bca4b5b9"
    snapshot = tmp_path / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text(json.dumps(SD15["model_index"]))
    siblings = [SimpleNamespace(rfilename=f) for f in SD15["files_mb"]]
    info = SimpleNamespace(sha=sha, siblings=siblings)
    asked = {}

    def snapshot_download(repo_id, local_files_only=False, allow_patterns=None, ignore_patterns=None, **_):
        if local_files_only:
            raise FileNotFoundError("not cached")  # as the real one does on a first start
        asked.update(allow=allow_patterns, ignore=ignore_patterns or [])
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id, **_: info)
    monkeypatch.setattr(pipeline_utils, "model_info", lambda repo_id, **_: info)
    monkeypatch.setattr(pipeline_utils, "hf_hub_download", lambda *a, **k: str(snapshot / "model_index.json"))
    monkeypatch.setattr(pipeline_utils, "snapshot_download", snapshot_download)

    path, revision = model_sources._from_hub(repo)
    assert path == snapshot and revision == sha

    def selected(name):
        return any(fnmatch.fnmatch(name, p) for p in asked["allow"]) and not any(
            fnmatch.fnmatch(name, p) for p in asked["ignore"]
        )

    chosen = {f: mb for f, mb in SD15["files_mb"].items() if selected(f)}
    weights = {f for f in chosen if f.endswith((".safetensors", ".bin", ".ckpt"))}
    assert weights == {
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "safety_checker/model.safetensors",
    }
    assert 5000 < sum(chosen.values()) < 6000 < 40000 < sum(SD15["files_mb"].values())
    assert {
        "tokenizer/vocab.json",
        "scheduler/scheduler_config.json",
        "feature_extractor/preprocessor_config.json",
    } <= set(chosen)


def test_the_stand_in_looks_like_the_real_repository(tiny_model):
    index = json.loads((tiny_model.path / "model_index.json").read_text())
    assert set(SD15["model_index"]) - {"_diffusers_version"} <= set(index)
    files = {str(f.relative_to(tiny_model.path)) for f in tiny_model.path.rglob("*") if f.is_file()}
    recorded = {f for f in SD15["files_mb"] if f.endswith(".safetensors")}
    assert recorded <= files, recorded - files  # the same weight files, variants and single-file ones included
    # What the baseline reports on disk is what it loads, not the variants beside it.
    main = [f for f in recorded if f.split("/")[0] in ("unet", "vae", "text_encoder") and "." not in Path(f).stem]
    loaded = sum((tiny_model.path / f).stat().st_size for f in main) / 2**20
    assert component_weights_mb(tiny_model.path) == pytest.approx(loaded)


@contextmanager
def count_calls(backend):
    """Count the calls of each component of a row's pipeline(s) during the block: UNet, VAE decoder, text encoder.
    The wrappers are removed afterwards, so the session-wide pipelines are left exactly as they were."""
    counts = {"unet": 0, "vae_decode": 0, "text_encoder": 0}
    wrapped = []  # (owner, attribute, had its own attribute, original)

    def count(owner, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)

        def counting(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)

        wrapped.append((owner, attribute, attribute in vars(owner), original))
        setattr(owner, attribute, counting)

    for pipe in getattr(backend, "pipes", {}).values() or [backend.pipe]:
        if hasattr(pipe, "vae_decoder"):  # OpenVINO: the compiled models' requests
            count(pipe.unet, "request", "unet")
            count(pipe.vae_decoder, "request", "vae_decode")
            count(pipe.text_encoder, "request", "text_encoder")
        else:
            count(pipe.unet, "forward", "unet")
            count(pipe.vae, "decode", "vae_decode")
            count(pipe.text_encoder, "forward", "text_encoder")
    try:
        yield counts
    finally:
        for owner, attribute, had_own, original in reversed(wrapped):
            if had_own:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)


def test_every_timed_call_does_the_same_work_and_holds_no_safety_checker(comparison):
    from core.request import GenerationRequest

    assert comparison.safety is not None  # the stand-in ships a checker, as SD-1.5 does: the harness applies it
    request = GenerationRequest("cartoon bird", steps=3, height=TINY_SIZE, width=TINY_SIZE)
    model_scheduler = json.loads((comparison.rows.model.path / "scheduler" / "scheduler_config.json").read_text())
    work = {}
    runs_here = [b for b in backend_ids() if backend_class(b).support(this_cpu()).runs]  # others: see test_backends
    for backend_id in runs_here:
        ready_or_skip(comparison, backend_id)
        backend = comparison.rows.backends[backend_id]
        pipes = list(getattr(backend, "pipes", {}).values()) or [backend.pipe]
        assert all(getattr(p, "safety_checker", None) is None for p in pipes), backend_id
        assert backend.scheduler_config == model_scheduler, backend_id  # the model's one scheduler config
        latents = initial_latents(request.seed, TINY_SIZE, TINY_SIZE)
        with count_calls(backend) as counts:
            backend.generate(request, latents, lambda *_: None, lambda *_: None)
        work[backend_id] = counts
    # Other work (the few-step row, labelled so everywhere): its own steps, one decode; the rest all the same work.
    other = {b: work.pop(b) for b in list(work) if comparison.rows.different_work(b)}
    for backend_id, counts in other.items():
        assert counts["unet"] == comparison.rows.backends[backend_id].steps and counts["vae_decode"] == 1, counts
    assert len({json.dumps(c, sort_keys=True) for c in work.values()}) == 1, work
    assert next(iter(work.values()))["unet"] == request.steps and next(iter(work.values()))["vae_decode"] == 1

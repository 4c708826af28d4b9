"""Offline means offline: with HF_HUB_OFFLINE=1 in the environment (what an operator sets at a booth without the
network, the weights on disk already), every row builds and loads from the Hugging Face cache alone, the few-step
row's LoRA and tiny decoder included; a file missing from the cache is named. Each case is a process of its own with
the real environment variable: diffusers and huggingface_hub copy it when they are imported, so patching it in this
process would not show what an operator's variable does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backends import backend_class, backend_ids
from backends.few_step_weights import LCM_LORA, LORA_FILE, TAESD, lcm_lora, taesd
from core.cpu import this_cpu

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).with_name("offline_run.py")
MODEL_ID = "sbs-test/tiny-sd"  # the `tiny` stand-in as a Hub repository in the cache (no such repository exists)


def add_to_hub_cache(hub: Path, repo_id: str, files: Path, commit: str) -> Path:
    """`files` as `repo_id`'s snapshot at `commit` in a Hugging Face cache laid out as huggingface_hub writes it
    (blobs, snapshot links, refs/main)."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for f in sorted(p for p in files.rglob("*") if p.is_file()):
        blob = repo / "blobs" / f"{commit[:8]}-{f.relative_to(files).as_posix().replace('/', '-')}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, blob)
        link = snapshot / f.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tiny_model, cache_dir, tmp_path_factory) -> Path:
    """A Hugging Face cache holding the model and the few-step row's two repositories (their stand-ins, laid out as
    the real repositories are)."""
    hub = tmp_path_factory.mktemp("hf-hub")
    add_to_hub_cache(hub, MODEL_ID, tiny_model.path, "1" * 40)
    add_to_hub_cache(hub, LCM_LORA, lcm_lora(tiny_model, cache_dir, print)[0], "2" * 40)
    add_to_hub_cache(hub, TAESD, taesd(tiny_model, cache_dir, print)[0], "3" * 40)
    return hub


def run_offline(hub: Path, cache: Path, out: Path, rows: str = "") -> dict:
    """The app's start and one comparison in a process of its own with HF_HUB_OFFLINE=1, as an operator's shell."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), MODEL_ID, str(cache), str(out), rows],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads(out.read_text())


def test_every_row_builds_and_loads_offline_from_the_hub_cache(hub_cache, tmp_path):
    """A fresh IR cache, so every row builds offline (the few-step row fuses the LoRA with diffusers' loader, which
    refuses offline unless the file is named), loads and gives its image."""
    report = run_offline(hub_cache, tmp_path / "cache", tmp_path / "offline.json")
    assert report["model"] == {"id": MODEL_ID, "revision": "1" * 40, "standin": False}, report["model"]
    for backend_id in backend_ids():
        if backend_class(backend_id).support(this_cpu()).runs:
            assert report["status"][backend_id].startswith("ready"), (backend_id, report["status"])
            assert report["results"][backend_id]["status"] == "ok", (backend_id, report["results"])
        else:
            assert report["status"][backend_id].startswith("unavailable: not on this CPU"), report["status"]


def test_a_file_missing_from_the_hub_cache_is_named(hub_cache, tmp_path):
    """The LoRA's snapshot without its weights (an interrupted download): the few-step row is unavailable naming the
    repository and the file; the other rows serve."""
    broken = tmp_path / "hub"
    shutil.copytree(hub_cache, broken, symlinks=True)
    (broken / f"models--{LCM_LORA.replace('/', '--')}" / "snapshots" / ("2" * 40) / LORA_FILE).unlink()
    # Two rows: the baseline, which builds nothing, stands for the others.
    report = run_offline(broken, tmp_path / "cache", tmp_path / "offline.json", "baseline,lcm-taesd")
    assert report["status"]["baseline"].startswith("ready"), report["status"]
    line = report["status"]["lcm-taesd"]
    assert line.startswith("unavailable") and LCM_LORA in line and LORA_FILE in line, line

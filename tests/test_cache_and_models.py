"""IR cache (hit, truncated entry rebuilt, killed build not trusted) and model sources (fallback, strict)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_SIZE, make_comparison

from backends import backend_class
from core.build_cache import BuildCache
from core.cpu import this_cpu
from core.request import LoadSettings
from harness.models.model_sources import ModelUnavailable, resolve_model

REPO = Path(__file__).resolve().parent.parent


def test_cache_builds_once_then_hits(tmp_path):
    cache = BuildCache.ir(tmp_path)
    calls = []

    def build(out: Path):
        calls.append(out)
        (out / "model.bin").write_bytes(b"x" * 100)

    first, hit1 = cache.get_or_build("k", build)
    second, hit2 = cache.get_or_build("k", build)
    assert (hit1, hit2) == (False, True) and first == second and len(calls) == 1


def test_truncated_or_partial_entries_are_rebuilt(tmp_path):
    cache = BuildCache.ir(tmp_path)
    build = lambda out: (out / "model.bin").write_bytes(b"x" * 100)  # noqa: E731
    entry, _ = cache.get_or_build("k", build)
    (entry / "model.bin").write_bytes(b"x" * 10)  # truncated
    assert cache.lookup("k") is None and not entry.exists()
    entry, hit = cache.get_or_build("k", build)
    (entry / "cache-manifest.json").unlink()  # no manifest: never trusted
    assert not hit and cache.lookup("k") is None


def test_failed_build_leaves_nothing(tmp_path):
    cache = BuildCache.ir(tmp_path)

    def build(out: Path):
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed mid-export")

    with pytest.raises(RuntimeError):
        cache.get_or_build("k", build)
    assert cache.lookup("k") is None and [p.name for p in (tmp_path / "ir").iterdir()] == ["k.lock"]


def test_a_dead_builds_temp_dir_is_removed_and_a_live_one_kept(tmp_path):
    dead = tmp_path / "ir" / "k.tmp-dead"  # no lease, and old: its builder is gone
    dead.mkdir(parents=True)
    os.utime(dead, (time.time() - 600, time.time() - 600))
    live = tmp_path / "ir" / "k.tmp-live"  # a fresh lease: a builder in some other container
    (tmp_path / "ir" / "k.tmp-live.lease").touch()
    live.mkdir()
    cache = BuildCache.ir(tmp_path)
    assert not dead.exists() and live.exists() and cache.builds_in_progress("k") == [live]


# A builder in a pid namespace of its own, as each replica's app is PID 1 in its container: its process id means
# nothing to another replica. It builds "shared" slowly, renewing its lease every 0.3 s (stale after 1.5 s).
BUILDER = """
import sys, time
from pathlib import Path
from core.build_cache import BuildCache

def build(out):
    open(sys.argv[2], "a").write("built\\n")
    time.sleep(float(sys.argv[3]))
    (out / "model.bin").write_bytes(b"x" * 100)

BuildCache(Path(sys.argv[1]), lease_renew_s=0.3, lease_stale_s=1.5).get_or_build("shared", build)
"""


def start_builder_in_own_pid_namespace(root: Path, log: Path, seconds: float) -> subprocess.Popen:
    if not shutil.which("unshare") or subprocess.run(["unshare", "--pid", "--fork", "true"]).returncode != 0:
        pytest.skip("unshare --pid is not permitted here")
    # --kill-child: the builder dies with the unshare process, as a container's processes die with it.
    unshare = ["unshare", "--pid", "--fork", "--kill-child"]
    return subprocess.Popen([*unshare, sys.executable, "-c", BUILDER, str(root), str(log), str(seconds)], cwd=REPO)


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_live_lease_in_another_pid_namespace_is_never_touched(tmp_path):
    root, log = tmp_path / "c", tmp_path / "builds.log"
    builder = start_builder_in_own_pid_namespace(root, log, seconds=4.0)
    wait_for(lambda: log.exists())
    other = BuildCache(root, lease_renew_s=0.3, lease_stale_s=1.5)  # another replica starting meanwhile
    for _ in range(3):  # longer than a stale lease: the builder keeps renewing it
        assert other.remove_dead_builds() == [] and other.builds_in_progress("shared"), "a live build was removed"
        time.sleep(1.0)
    assert builder.wait(60) == 0
    entry, hit = other.get_or_build("shared", lambda out: pytest.fail("built twice"))
    assert hit and (entry / "model.bin").exists() and log.read_text() == "built\n"


def test_a_builder_killed_mid_build_leaves_a_stale_lease_that_the_next_replica_clears(tmp_path):
    root, log = tmp_path / "c", tmp_path / "builds.log"
    builder = start_builder_in_own_pid_namespace(root, log, seconds=600.0)
    wait_for(lambda: log.exists())
    builder.kill()  # SIGKILL to unshare's child tree: the builder dies mid-build, its lease stops being renewed
    builder.wait(30)
    other = BuildCache(root, lease_renew_s=0.3, lease_stale_s=1.5)
    assert other.builds_in_progress("shared")  # not stale yet: nobody may assume it is dead
    entry, hit = other.get_or_build("shared", lambda out: (out / "model.bin").write_bytes(b"rebuilt"))
    assert not hit and (entry / "model.bin").read_bytes() == b"rebuilt"
    assert sorted(p.name for p in root.iterdir()) == ["shared", "shared.lock"]  # no multi-GB leftovers


def test_openvino_row_second_load_hits_cache_and_rebuilds_truncated(tiny_model, tmp_path):
    settings = LoadSettings(sizes=(TINY_SIZE,), threads=2, cache_dir=tmp_path)

    def load():
        comparison = make_comparison(tiny_model, ["openvino-static"], settings)
        comparison.load_all()
        return comparison.rows.status["openvino-static"]

    first = load()
    assert first.state == "ready" and first.load.cache == "built"
    second = load()
    assert second.state == "ready" and second.load.cache == "hit"
    (weights,) = list((tmp_path / "ir").glob("*/unet/openvino_model.bin"))
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    third = load()
    assert third.state == "ready" and third.load.cache == "built", third.detail
    # Damaged at the same size (the manifest's check passes): the entry fails to load, is moved aside, rebuilt once.
    (graph,) = list((tmp_path / "ir").glob("*/unet/openvino_model.xml"))
    text = graph.read_bytes()
    graph.write_bytes(text[:200] + b"#" * 64 + text[264:])
    fourth = load()
    assert fourth.state == "ready", fourth.detail
    assert fourth.load.cache.startswith("rebuilt (the cached IR failed to load")
    assert len(list((tmp_path / "ir").glob("*.damaged-*"))) == 1
    fifth = load()
    assert fifth.state == "ready" and fifth.load.cache == "hit"  # the rebuilt entry is the cache's now


def test_unreachable_hub_falls_back_to_tiny_quickly(cache_dir):
    start = time.monotonic()
    source = resolve_model("no-such-org/no-such-model-for-tests", cache_dir)
    assert time.monotonic() - start < 60  # a hang guard, not a speed assertion
    assert source.standin and source.model_id == "tiny" and "no-such-model-for-tests" in source.fallback_reason


def test_strict_mode_refuses_the_fallback(cache_dir):
    with pytest.raises(ModelUnavailable, match="no-such-model-for-tests"):
        resolve_model("no-such-org/no-such-model-for-tests", cache_dir, strict=True)


def test_local_directory_without_model_index_is_refused(tmp_path):
    with pytest.raises(ModelUnavailable, match="model_index.json"):
        resolve_model(str(tmp_path), tmp_path)


def test_local_diffusers_directory_loads_on_the_same_path(tiny_model, tmp_path):
    source = resolve_model(str(tiny_model.path), tmp_path)
    assert not source.standin and source.path == tiny_model.path.resolve()


def test_changed_weights_in_a_local_directory_get_a_new_revision(tiny_model, tmp_path):
    import shutil

    local = shutil.copytree(tiny_model.path, tmp_path / "my-model")
    before = resolve_model(str(local), tmp_path).revision
    assert resolve_model(str(local), tmp_path).revision == before  # stable: the IR cache hits
    weights = local / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # same path and size, new content (and mtime)
    assert resolve_model(str(local), tmp_path).revision != before


def test_prebuilt_int8_source_refuses_sizes_it_was_not_built_for(comparison, tiny_model, tmp_path):
    from conftest import ready_or_skip

    from backends.int8_tome import Int8Tome

    ready_or_skip(comparison, "int8-tome")
    prebuilt = comparison.rows.backends["int8-tome"].ir_dirs[TINY_SIZE]
    settings = LoadSettings(sizes=(TINY_SIZE, 2 * TINY_SIZE), threads=2, cache_dir=tmp_path, int8_source=str(prebuilt))
    with pytest.raises(ValueError, match=f"built for {TINY_SIZE}x{TINY_SIZE} only; 256x256 cannot run"):
        Int8Tome().load(tiny_model, settings, lambda _: None)


def _slow_build_in_a_replica(root: str, log: str) -> None:
    def build(out: Path):
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(1.0)
        (out / "model.bin").write_bytes(b"x" * 100)

    BuildCache(Path(root)).get_or_build("shared", build)


def test_replicas_sharing_a_cache_build_an_entry_once(tmp_path):
    import multiprocessing

    log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("spawn")
    replicas = [ctx.Process(target=_slow_build_in_a_replica, args=(str(tmp_path / "c"), str(log))) for _ in range(3)]
    for r in replicas:
        r.start()
    for r in replicas:
        r.join(60)
    assert [r.exitcode for r in replicas] == [0, 0, 0]
    assert log.read_text() == "built\n" and BuildCache(tmp_path / "c").lookup("shared") is not None


def test_a_complete_entry_renamed_by_another_process_is_kept(tmp_path):
    cache = BuildCache(tmp_path)

    def build_racing_another_process(out: Path):
        (out / "model.bin").write_bytes(b"mine")
        other = BuildCache(tmp_path)  # another replica finishes first, without the lock (no flock on its FS)
        other._build("k", lambda o: (o / "model.bin").write_bytes(b"theirs"))

    entry = cache._build("k", build_racing_another_process)
    assert (entry / "model.bin").read_bytes() == b"theirs" and cache.lookup("k") == entry
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_loading_logs_each_rows_cache_state(tiny_model, cache_dir, caplog):
    """What a restart's log shows per row (the image test reads it): how long the load took and the cache."""
    import logging

    from conftest import fake_comparison

    with caplog.at_level(logging.INFO, logger="harness.compare.rows"):
        fake_comparison(tiny_model, cache_dir, backends=["baseline"])
    assert "[baseline] loaded in" in caplog.text and "cache: n/a (nothing to build)" in caplog.text


def test_prepare_builds_every_rows_ir_once_then_finds_it(tiny_model, tmp_path, capsys):
    """`python -m harness.prepare` (the Space image's build step): the OpenVINO rows' IR is built, pytorch-bf16's
    kernels compiled into inductor's cache, the other PyTorch rows have nothing to build; run again, every build is
    a cache hit."""
    from conftest import TINY_SIZE

    from harness import prepare

    argv = ["--model", "tiny", "--sizes", str(TINY_SIZE), "--cache-dir", str(tmp_path), "--calibration-prompts", "2"]
    first = prepare.main(argv)
    assert first["baseline"] == "nothing to build"
    assert first["openvino-static"].startswith("built in") and first["int8-tome"].startswith("built in")
    for backend_id in ("ipex-bf16", "pytorch-bf16"):  # skipped where this CPU cannot run them, with the reason
        support = backend_class(backend_id).support(this_cpu())
        if not support.runs:
            assert first[backend_id] == f"skipped, cannot run here ({support.reason}); it builds at its first start"
        elif backend_id == "ipex-bf16":
            assert first[backend_id] == "nothing to build"
    again = prepare.main(argv)
    assert again["openvino-static"] == again["int8-tome"] == "cache hit"
    if backend_class("pytorch-bf16").support(this_cpu()).runs:  # inductor's kernels, compiled by the first run
        assert again["pytorch-bf16"] == "cache hit"
    assert "prepare: int8-tome: cache hit" in capsys.readouterr().out
    # The int8 IR for the other side of the VNNI line too (an image built on one CPU kind, run on another): one
    # more build, found again on the next run; this CPU's own IR is not built again.
    other = "avx2" if this_cpu().int8_vnni else "avx512-vnni"
    for_other = prepare.main([*argv, "--for-cpu-kinds", other])
    assert for_other["int8-tome"].startswith("built in") and for_other["openvino-static"] == "cache hit"
    int8_irs = sorted(p.name for p in (tmp_path / "ir").iterdir() if "-tome0.5-" in p.name and p.is_dir())
    assert len(int8_irs) == 2 and sum("-of-" in name for name in int8_irs) == 1, int8_irs
    assert prepare.main([*argv, "--for-cpu-kinds", other])["int8-tome"] == "cache hit"
    # A prebuilt int8 pipeline given: prepare builds no int8 IR of its own (in a fresh cache).
    built = next(p for p in (tmp_path / "ir").iterdir() if "-tome0.5-" in p.name and p.is_dir())
    fresh = tmp_path / "fresh"
    argv = ["--model", "tiny", "--sizes", str(TINY_SIZE), "--cache-dir", str(fresh), "--int8-source", str(built)]
    prebuilt = prepare.main([*argv, "--backends", "int8-tome"])
    assert prebuilt["int8-tome"] == "cache hit" and not list((fresh / "ir").glob("*int8*"))


READ_ONLY_LOAD = """
import sys
from pathlib import Path
from core.request import LoadSettings
from harness.compare.comparison import Comparison
from harness.models.model_sources import resolve_model
from harness.compare.rows import RowSet

model = resolve_model(sys.argv[1], Path(sys.argv[2]))
rows = RowSet(model, ["baseline", "openvino-static"], LoadSettings((128,), 2, Path(sys.argv[2])))
Comparison(rows).load_all()
print(model.revision, *(rows.status[b].state for b in rows.order))
"""


def test_a_model_directory_on_a_read_only_mount_loads_keyed_by_its_content(tiny_model, tmp_path):
    """A Space can mount a model repository read-only: every row loads from it, nothing is written beside it, and
    the IR cache is keyed by the files' content (a remount with new modification times reuses the IR)."""
    if subprocess.run(["unshare", "--mount", "true"]).returncode != 0:
        pytest.skip("unshare --mount is not permitted here")
    source = shutil.copytree(tiny_model.path, tmp_path / "repo")
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    script = (
        f"mount --bind {source} {mounted} && mount -o remount,bind,ro {mounted} && "
        f"touch {mounted}/probe 2>/dev/null && echo WRITABLE; "
        f'exec {sys.executable} -c "$0" {mounted} {tmp_path / "cache"}'
    )
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script, READ_ONLY_LOAD], cwd=REPO, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    revision, *states = done.stdout.decode().split()[-3:]
    assert "WRITABLE" not in done.stdout.decode() and states == ["ready", "ready"]
    assert sorted(p.name for p in source.iterdir()) == sorted(p.name for p in tiny_model.path.iterdir())
    for f in source.rglob("*.json"):
        os.utime(f, (time.time() + 60, time.time() + 60))  # a remount: same bytes, new times
    assert resolve_model(str(source), tmp_path / "cache").revision == revision

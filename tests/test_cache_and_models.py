"""IR cache (hit, truncated entry rebuilt, killed build not trusted) and model sources (fallback, strict)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import TINY_SIZE, make_comparison

from backends.base import LoadSettings
from harness.build_cache import BuildCache
from harness.model_sources import ModelUnavailable, resolve_model


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


def test_dead_process_temp_dirs_are_removed_at_start(tmp_path):
    stale = tmp_path / "ir" / "k.tmp-999999999"
    stale.mkdir(parents=True)
    BuildCache.ir(tmp_path)
    assert not stale.exists()


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

    with caplog.at_level(logging.INFO, logger="harness.rows"):
        fake_comparison(tiny_model, cache_dir, backends=["baseline"])
    assert "[baseline] loaded in" in caplog.text and "cache: n/a (nothing to build)" in caplog.text


def test_prepare_builds_every_rows_ir_once_then_finds_it(tiny_model, tmp_path, capsys):
    """`python -m harness.prepare` (the Space image's build step): the OpenVINO rows' IR is built, the PyTorch
    rows have nothing to build; run again, every build is a cache hit."""
    from conftest import TINY_SIZE

    from harness import prepare

    argv = ["--model", "tiny", "--sizes", str(TINY_SIZE), "--cache-dir", str(tmp_path), "--calibration-prompts", "2"]
    first = prepare.main(argv)
    assert first["baseline"] == first["ipex-bf16"] == "nothing to build"
    assert first["openvino-static"].startswith("built in") and first["int8-tome"].startswith("built in")
    again = prepare.main(argv)
    assert again["openvino-static"] == again["int8-tome"] == "cache hit"
    assert "prepare: int8-tome: cache hit" in capsys.readouterr().out

"""`make cluster-head` and `make cluster-worker` as an operator runs them (scripts/cluster.sh, on loopback, the `tiny`
stand-in's baseline): the head makes its token and starts the front; a worker with a wrong token is told so and
changes nothing; a worker with the token joins, and the page's /generate comes back with its kind's rows from it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

from core.cpu import this_cpu

ROOT = Path(__file__).resolve().parent.parent
KIND = this_cpu().kinds_presentable()[0]  # the worker plays the least kind (its own on an AVX2-only machine)


def script(*args: str, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    command = ["bash", "scripts/cluster.sh", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def head(tmp_path):
    port, ray_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SBS_"))},
        "PYTHON": sys.executable, "RAY_NODE_IP": "127.0.0.1", "RAY_PORT": str(ray_port),
        "RAY_TOKEN_FILE": str(tmp_path / "token"), "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    log = (tmp_path / "head.log").open("w")
    flags = ["--model", "tiny", "--backends", "baseline", "--port", str(port), "--cluster-kinds", KIND]
    process = subprocess.Popen(
        ["bash", "scripts/cluster.sh", "head", *flags], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield env, f"http://127.0.0.1:{port}/", f"127.0.0.1:{ray_port}", tmp_path / "head.log", process
    finally:
        process.terminate()  # the script alone, as a container's stop signal: it ends the front and Ray
        try:
            process.wait(timeout=60)
        finally:
            front_left = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True).stdout
            script("stop", env=env)  # the worker's Ray processes (and anything the head left)
            log.close()
        assert not front_left, "the front outlived the head's script"


def generate(url: str) -> dict:
    from gradio_client import Client

    client = Client(url, verbose=False)
    return client.predict("a lighthouse at dusk", "", 7, False, 8, 7.5, "128x128", "dpm++", None, api_name="/generate")


def test_the_head_and_a_worker_started_as_the_readme_says(head):
    env, url, address, log, process = head
    from gradio_client import Client

    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            if Client(url, verbose=False).predict(api_name="/health")["warm"]:
                break
        except Exception:  # not serving yet
            pass
        time.sleep(1)
    token = Path(env["RAY_TOKEN_FILE"])
    assert oct(token.stat().st_mode)[-3:] == "600" and len(token.read_text().strip()) == 64

    wrong = token.with_name("wrong-token")
    wrong.write_text("f" * 64)
    refused = script("worker", address, env={**env, "RAY_TOKEN_FILE": str(wrong)})
    assert refused.returncode != 0
    assert "the head refused this machine's token" in refused.stderr, refused.stderr[-2000:]
    missing = script("worker", address, env={**env, "RAY_TOKEN_FILE": str(token.with_name("nowhere"))})
    assert missing.returncode == 2 and "no token at" in missing.stderr

    before = generate(url)[4]["remotes"][0]
    assert (before["state"], before["detail"]) == ("unreachable", "no machine of this kind in the cluster")

    joined = script("worker", address, env={**env, "SBS_CPU_KIND": KIND})
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert f"as a machine of kind {KIND}" in joined.stdout
    deadline = time.monotonic() + 240
    while True:
        group = generate(url)[4]["remotes"][0]
        if group["state"] == "done" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert group["state"] == "done", (group["state"], group["detail"])
    assert group["kind"] == KIND
    assert [(r["backend"], r["status"]) for r in group["rows"]] == [("baseline", "ok")]
    assert group["node"] and group["latents_sha256"]

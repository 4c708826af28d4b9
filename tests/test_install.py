"""The install script that make, CI and the Dockerfile share; the Dockerfile lint; the Space front matter."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(*args, **env):
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)


def test_install_script_rejects_unknown_options():
    done = run("bash", "scripts/install.sh", "--bogus")
    assert done.returncode == 2 and "unknown option --bogus" in done.stderr


def test_install_script_is_idempotent_for_the_current_venv():
    done = run("bash", "scripts/install.sh", "--dev", VENV=".venv")  # make test ran it already
    assert done.returncode == 0 and "up to date" in done.stdout, done.stdout + done.stderr


def test_cpu_torch_variant_drops_the_cuda_build():
    script = (REPO / "scripts" / "install.sh").read_text()
    assert "download.pytorch.org/whl/cpu" in script and "nvidia-" in script and "cpu_torch=1\n" in script
    assert "scripts/install.sh --cpu-torch" in (REPO / "Dockerfile").read_text()


def test_install_script_names_the_python_it_needs(tmp_path):
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.13.1' && exit 0\nexit 1\n")
    fake.chmod(0o755)
    done = run("bash", "scripts/install.sh", PYTHON=str(fake), VENV=str(tmp_path / "venv"))
    assert done.returncode == 1 and "needs Python 3.11" in done.stderr and "Python 3.13.1" in done.stderr


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")
    done = run(hadolint, "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_space_front_matter():
    front = (REPO / "README.md").read_text().split("---")[1]
    for line in ("sdk: docker", "app_port: 7860", "suggested_hardware: cpu-upgrade", "short_description:"):
        assert line in front


def test_every_requirement_is_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (REPO / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert "==" in line, f"{name}: {line} is not pinned"


# Under the launcher's environment: the allocator actually mapped, threads set, and an OpenVINO compile plus
# a PyTorch op (both rows' runtimes) complete. OpenVINO aborted here under plain LD_PRELOAD=jemalloc.
UNDER_LAUNCHER_ENV = """
import os, sys
import numpy as np, openvino as ov, openvino.opset13 as ops, torch
x = ops.parameter([1, 64], np.float32)
model = ov.Model([ops.matmul(x, ops.constant(np.ones((64, 64), np.float32)), False, False)], [x])
out = ov.Core().compile_model(model, "CPU")(np.ones((1, 64), np.float32))[0]
assert out[0, 0] == 64 and torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))[0, 0, 0, 0] == 9
maps = open("/proc/self/maps").read()
print("jemalloc" if "libjemalloc" in maps else "glibc", os.environ["SBS_THREADS"], os.environ.get("MALLOC_CONF", ""))
"""


def test_launcher_environment_preloads_jemalloc_and_openvino_runs_under_it():
    if subprocess.run(["dpkg", "-s", "libjemalloc2"], capture_output=True).returncode != 0:
        pytest.skip("libjemalloc2 missing: scripts/install.sh installs it as root")
    python = str(REPO / ".venv" / "bin" / "python")
    code = f"source scripts/runtime-env.sh && exec {python} -c '{UNDER_LAUNCHER_ENV}'"
    clean = {"SBS_THREADS": "", "OMP_NUM_THREADS": "", "MALLOC_CONF": "", "LD_PRELOAD": "", "PYTHON": python}
    assert "SBS_JEMALLOC=1" in (REPO / "Dockerfile").read_text()  # the image turns it on
    done = run("bash", "-c", code, **clean, SBS_JEMALLOC="1")
    assert done.returncode == 0, done.stderr[-2000:]
    allocator, threads, malloc_conf = (done.stdout.split() + ["", "", ""])[:3]
    assert allocator == "jemalloc" and int(threads) == len(os.sched_getaffinity(0))
    assert "oversize_threshold:1" in malloc_conf

    off = run("bash", "-c", code, **clean, SBS_JEMALLOC="")
    assert off.returncode == 0 and off.stdout.startswith("glibc"), off.stderr[-2000:]


def test_the_booth_command_starts_a_public_app_on_the_network():
    """`make booth` (the README's booth line): public mode (strict model, caps, short errors), every interface."""
    import shlex

    import app
    from harness.settings import Settings

    dry = run("make", "-n", "booth")
    assert dry.returncode == 0, dry.stderr
    (line,) = [line for line in dry.stdout.replace("\\\n", " ").splitlines() if "scripts/start.sh" in line]
    flags = shlex.split(line.split("scripts/start.sh", 1)[1])
    settings = Settings.from_env({}).updated(Settings.parser(app.__doc__).parse_args(flags))
    assert settings.public and settings.host == "0.0.0.0" and settings.trusted_proxies == ""
    assert "make booth" in (REPO / "README.md").read_text()

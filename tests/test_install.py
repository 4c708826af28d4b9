"""The install script that make, CI and the Dockerfile share; the Dockerfile lint; the Space front matter."""

import os
import shutil
import subprocess
from pathlib import Path

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
    assert "download.pytorch.org/whl/cpu" in script and "nvidia-" in script
    assert "scripts/install.sh --cpu-torch" in (REPO / "Dockerfile").read_text()


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

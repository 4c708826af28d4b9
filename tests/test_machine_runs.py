"""What a run on another machine is (`harness.machines.runs`), once for remotes and cluster kinds: its states, the
deadline, cancellation, the error id and the final noise check, on runs that call nothing but a function."""

from __future__ import annotations

import re
import threading
import time

import pytest

from core.request import GenerationRequest
from harness.machines.runs import (
    CANCELLED,
    NOISE_DIFFERS,
    Expected,
    MachineRun,
    OtherMachines,
    RunState,
)
from harness.settings import Settings

EXPECTED = Expected("model", "rev", "noise-of-the-page")


class BlockingRun(MachineRun):
    """Waits for its call to be woken, as a cluster's stream does: `_interrupt` wakes it, and it then raises."""

    def __init__(self, tmp_path, timeout_s=30.0):
        super().__init__("blocking", EXPECTED, timeout_s, tmp_path / "images")
        self.woken = threading.Event()

    def _interrupt(self):
        self.woken.set()

    def _call(self):
        self._update(state=RunState.RUNNING)
        self.woken.wait(30)
        raise ConnectionError("the stream was cancelled")


class ScriptedRun(MachineRun):
    def __init__(self, tmp_path, call):
        super().__init__("scripted", EXPECTED, 30.0, tmp_path / "images")
        self.call = call

    def _call(self):
        self.call(self)


def final(run: MachineRun, wait_s: float = 10.0):
    run.join(wait_s)
    state = run.state()
    assert state.done, state
    return state


def test_a_cancelled_run_ends_cancelled_whatever_its_call_raises(tmp_path):
    run = BlockingRun(tmp_path).start()
    while run.state().state != RunState.RUNNING:
        time.sleep(0.01)
    run.cancel()
    state = final(run)
    assert (state.state, state.detail) == (RunState.FAILED, CANCELLED) and state.finished


def test_a_run_past_its_deadline_ends_too_slow(tmp_path):
    state = final(BlockingRun(tmp_path, timeout_s=0.3).start())
    assert state.state == "too slow" and "no answer within 0 s" in state.detail


def test_an_unexpected_failure_ends_failed_with_an_error_id_and_no_details(tmp_path, caplog):
    def fail(run):
        raise RuntimeError("secret address 10.1.2.3")

    state = final(ScriptedRun(tmp_path, fail).start())
    found = re.fullmatch(r"failed \(error ([0-9a-f]{8}), in the log\)", state.detail)
    assert state.state == RunState.FAILED and found, state.detail
    assert "10.1.2.3" not in state.detail and found.group(1) in caplog.text and "10.1.2.3" in caplog.text


@pytest.mark.parametrize("noise, detail", [("noise-of-the-page", ""), ("other-noise", NOISE_DIFFERS), (None, "")])
def test_a_finished_run_says_when_its_rows_started_from_other_noise(tmp_path, noise, detail):
    def rows(run):
        run._show([{"backend": "baseline", "status": "ok"}], {}, latents_sha256=noise)
        run._finish()

    state = final(ScriptedRun(tmp_path, rows).start())
    assert (state.state, state.detail, len(state.rows)) == (RunState.DONE, detail, 1)


def test_states_are_words_the_page_and_the_json_show_as_written():
    assert [s for s in RunState if not s.final] == ["connecting", "queued", "running"]
    assert f"{RunState.NOT_COMPARABLE}" == "not comparable" and RunState("too slow") is RunState.TOO_SLOW


def test_other_machines_are_one_group_of_groups_in_order(tmp_path):
    class Group:
        def __init__(self, labels, timeout_s, serving=""):
            self._labels, self.timeout_s, self.serving, self.started = labels, timeout_s, serving, []

        def labels(self):
            return self._labels

        def start(self, request, expected, visitor_key):
            self.started.append((request, visitor_key))
            return [f"run {label}" for label in self._labels]

        def healths(self):
            return {label: "no answer" for label in self._labels}

        def serving_now(self):
            return self.serving

    remotes, cluster = Group(["A", "B"], 60.0), Group(["Cluster: amx machines"], 600.0, "Up to 4 visitors")
    machines = OtherMachines([remotes, cluster])
    request = GenerationRequest("a prompt")
    assert machines.labels() == ["A", "B", "Cluster: amx machines"]
    assert machines.start(request, EXPECTED, "v") == ["run A", "run B", "run Cluster: amx machines"]
    assert remotes.started == cluster.started == [(request, "v")]
    assert machines.timeout_s == 600.0 and machines.serving_now() == "Up to 4 visitors"
    assert list(machines.healths()) == machines.labels()


def test_a_replica_takes_every_setting_but_the_instances_own():
    taken = set(Settings().replica_settings())
    own = {"cache_dir", "threads", "host", "port", "queue_size", "trusted_proxies", "remotes", "remote_auth",
           "remote_timeout_s", "auth", "cluster", "cluster_kinds", "cluster_visitors", "kiosk_url", "kiosk_idle_s",
           "booth_prompts", "kiosk_visitors"}  # fmt: skip
    assert taken == set(Settings.__dataclass_fields__) - own
    assert {"model", "backends", "sizes", "int8_mode", "public", "max_steps", "max_size", "steps"} <= taken
    assert Settings(**Settings(model="tiny", public=True).replica_settings()).public

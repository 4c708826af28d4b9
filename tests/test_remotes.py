"""Live rows from other machines (issue 27), on loopback: instances of the app in processes of their own, named as
remotes by a front page (this test process, on the session's comparison). Timings are not checked: instances on
one 2-core machine disturb each other (the page says so); what is checked is behaviour and timestamps."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY_SIZE, free_port

import ui.context
import ui.handlers
import ui.layout
from core.request import GenerationRequest
from harness.machines.remotes import Remote, RemoteRun
from harness.machines.runs import Expected
from harness.records.examples import compute_example
from harness.records.showcase import Showcase
from harness.settings import Settings

ROOT = Path(__file__).parent.parent
SIZE = f"{TINY_SIZE}x{TINY_SIZE}"
AUTH = ("operator", "booth-secret")


class Instance:
    """`python app.py ...` on a free port, its log in `log_path`."""

    def __init__(self, tmp_path: Path, name: str, flags: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = tmp_path / f"{name}.log"
        command = [sys.executable, "app.py", "--port", str(self.port), "--threads", "1", *flags]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def health(self, auth=None) -> dict:
        from gradio_client import Client

        return Client(self.url, auth=auth, verbose=False, download_files=False).predict(api_name="/health")

    def wait_until_warm(self, auth=None, timeout_s: float = 600) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log_path.read_text()[-3000:]
            try:
                health = self.health(auth)
                loading = any(s.startswith("load") for s in health["rows"].values())
                if health["model"] and health["warm"] and not loading:
                    return health
            except Exception:  # not serving yet
                pass
            time.sleep(1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="module")
def instances(tiny_model, cache_dir, tmp_path_factory):
    """ "closed": a remote closed with --auth, every row; "other": an open remote on another model (a copy of the
    tiny stand-in in a directory of its own: another model id), one row."""
    tmp = tmp_path_factory.mktemp("instances")
    other_model = tmp / "other-model"
    shutil.copytree(tiny_model.path, other_model)
    common = ["--cache-dir", str(cache_dir), "--calibration-prompts", "2"]
    started = {
        "closed": Instance(tmp, "closed", ["--model", "tiny", *common, "--auth", ":".join(AUTH)]),
        "other": Instance(
            tmp, "other", ["--model", str(other_model), *common, "--backends", "baseline", "--sizes", str(TINY_SIZE)]
        ),
    }
    try:
        started["closed"].wait_until_warm(AUTH)
        started["other"].wait_until_warm()
        yield started
    finally:
        for instance in started.values():
            instance.stop()


def closed_port() -> int:
    """A port nothing listens on."""
    return free_port()


def front_page(comparison, tmp_path, remotes: str, remote_auth: str, timeout_s: float = 300.0):
    settings = Settings(queue_size=8, trusted_proxies="127.0.0.1", remotes=remotes, remote_auth=remote_auth,
                        remote_timeout_s=timeout_s)  # fmt: skip
    page = ui.context.make_page(comparison, Showcase(tmp_path / "showcase", "test machine"), settings)
    return page


def run_generate(page, prompt="a lighthouse at dusk", steps=4, seed=5):
    generate = ui.handlers.make_generate(page)
    return list(generate(prompt, "", seed, False, steps, 7.5, SIZE, "dpm++", progress=lambda *a, **k: None))


def test_a_comparison_shows_every_row_of_every_instance_from_the_same_noise_at_the_same_time(
    comparison, instances, tmp_path
):
    """A front page naming a closed remote (with its password), a remote on another model and an address where
    nothing listens: every local row and every row of the closed remote, with images and figures, the same
    noise hash, the remote's call in flight while the local rows run; the other model shown as not comparable,
    the dead address as unreachable; the remote on this machine said to be on the same machine."""
    dead = f"http://127.0.0.1:{closed_port()}/"
    remotes = f"Rack A={instances['closed'].url};Other model={instances['other'].url};Down={dead}"
    page = front_page(comparison, tmp_path, remotes, ":".join(AUTH))
    offset = time.time() - time.perf_counter()  # the local timed sections are perf_counter times
    sections_before = len(comparison.timed_sections)
    final = run_generate(page)[-1]
    figures = final[4]
    local = {r["backend"]: r for r in figures["rows"]}
    remote = {r["label"]: r for r in figures["remotes"]}
    closed_health = instances["closed"].health(AUTH)
    assert remote["Rack A"]["state"] == "done", remote["Rack A"]
    rows_a = {r["backend"]: r for r in remote["Rack A"]["rows"]}
    for backend_id, state in closed_health["rows"].items():
        expected = "skipped" if state.startswith("unavailable: not on this CPU") else "ok"
        assert rows_a[backend_id]["status"] == expected, (backend_id, rows_a[backend_id])
        assert local[backend_id]["status"] == expected, (backend_id, local[backend_id])
    assert remote["Rack A"]["latents_sha256"] == figures["latents_sha256"]
    # Every image: the local rows' and the remote's, as files the page can serve.
    order = comparison.rows.order
    n = len(order)
    local_images = final[5 : 5 + n]
    remote_outputs = final[5 + 2 * n + 5 :]  # after stage chart, slider, radio, kept images, awaiting
    group_a = remote_outputs[: 1 + 2 * n]
    for i, backend_id in enumerate(order):
        if local[backend_id]["status"] == "ok":
            assert local_images[i] and Path(local_images[i]).is_file()
            assert group_a[1 + i] and Path(group_a[1 + i]).is_file(), (backend_id, group_a)
            card = group_a[1 + n + i]
            if local[backend_id].get("different_work"):  # other work: how soon, never a speed-up (its own line)
                assert "s/step" in card and "an image in" in card and "not the same work" in card, card
            else:
                assert "s/step" in card and "this page's baseline" in card, card
    header_a = group_a[0]
    assert "Rack A" in header_a and "same machine" in header_a and "Same starting noise" in header_a, header_a
    assert "AMD" in header_a or "Intel" in header_a or closed_health["cpu"].split()[0] in header_a
    # In flight while the local rows ran: the remote's call began before the last local timed section ended, and
    # ended after the first one began.
    sections = comparison.timed_sections[sections_before:]
    first_start, last_end = offset + sections[0][1], offset + sections[-1][2]
    assert remote["Rack A"]["started_at"] < last_end and remote["Rack A"]["finished_at"] > first_start, (
        remote["Rack A"],
        first_start,
        last_end,
    )
    # The remote on another model and the dead address: said so, within the bounds.
    assert remote["Other model"]["state"] == "not comparable" and "another model" in remote["Other model"]["detail"]
    assert remote["Down"]["state"] == "unreachable", remote["Down"]
    group_other, group_down = remote_outputs[1 + 2 * n : 2 + 4 * n], remote_outputs[2 + 4 * n :]
    assert "not comparable" in group_other[0] and "unreachable" in group_down[0]
    # The slider can compare the baseline with a remote's row.
    assert any(key.startswith("Rack A · ") for key in final[5 + 2 * n + 3])  # the images kept for the slider


def test_a_remote_killed_mid_run_and_a_wrong_password_leave_the_rest_finishing(comparison, instances, tmp_path,
                                                                                cache_dir):  # fmt: skip
    """A remote killed while it runs the comparison: its card says contact was lost, the local rows finish. The
    closed remote called with a wrong password: refused, shown as such."""
    doomed = Instance(tmp_path, "doomed", ["--model", "tiny", "--cache-dir", str(cache_dir), "--backends",
                                           "baseline,openvino-static"])  # fmt: skip
    try:
        doomed.wait_until_warm()
        remotes = f"Doomed={doomed.url};Rack A={instances['closed'].url}"
        page = front_page(comparison, tmp_path, remotes, "operator:wrong-password", timeout_s=120)
        runs: list[RemoteRun] = []
        start = page.machines.start
        page.machines.start = lambda *a, **k: runs.extend(start(*a, **k)) or runs

        def kill_when_running():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if runs and runs[0].state().state == "running":
                    os.kill(doomed.process.pid, signal.SIGKILL)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_running)
        killer.start()
        final = run_generate(page, steps=30)[-1]
        killer.join()
    finally:
        doomed.stop()
    assert doomed.process.returncode == -signal.SIGKILL  # killed mid-run, not finished
    figures = final[4]
    remote = {r["label"]: r for r in figures["remotes"]}
    assert remote["Doomed"]["state"] in ("lost", "failed"), remote["Doomed"]
    assert remote["Rack A"]["state"] == "refused" and "credentials" in remote["Rack A"]["detail"]
    assert all(r["status"] in ("ok", "skipped") for r in figures["rows"])  # the local rows finished
    n = len(comparison.rows.order)
    remote_outputs = final[5 + 2 * n + 5 :]
    assert "lost" in remote_outputs[0] or "failed" in remote_outputs[0], remote_outputs[0]
    assert "refused" in remote_outputs[1 + 2 * n]


def test_a_remote_busy_with_another_visitor_is_queued_then_done_never_lost(cache_dir, tmp_path):
    """A remote held by another visitor's long comparison, during which the remote sends the waiting call nothing but
    Gradio's heartbeat (every 15 s) for longer than any read timeout on the way (CONNECT_TIMEOUT_S): the call waits in
    the remote's queue, shown as queued with its place, then gives its rows; never "lost". (With the stream read
    under a 10 s timeout it was "lost", as seen with remotes busy computing their examples.)"""
    from gradio_client import Client

    from harness.api import VISITOR_HEADER
    from harness.machines.remotes import CONNECT_TIMEOUT_S

    # The other visitor's comparison at 512x512 with the most steps the remote takes: tiny's baseline runs about 1 s a
    # step there on one thread, so about a minute with nothing in it for a call waiting in the queue.
    remote = Instance(tmp_path, "busy", ["--model", "tiny", "--cache-dir", str(cache_dir), "--backends", "baseline",
                                         "--sizes", f"{TINY_SIZE},512", "--auth", ":".join(AUTH)])  # fmt: skip
    try:
        health = remote.wait_until_warm(AUTH)
        other = Client(remote.url, auth=AUTH, headers={VISITOR_HEADER: "other"}, verbose=False, download_files=False)
        busy = other.submit("a harbour in fog", "", 9, False, 50, 7.5, "512x512", "dpm++", None, api_name="/generate")
        deadline = time.monotonic() + 120
        while getattr(busy.status().code, "name", "") not in ("PROCESSING", "ITERATING", "PROGRESS"):
            assert time.monotonic() < deadline and not busy.done(), busy.status()
            time.sleep(0.1)
        request = GenerationRequest("a lighthouse at dusk", "", 5, 4, 7.5, TINY_SIZE, TINY_SIZE, "dpm++")
        expected = Expected(health["model"], health["revision"], "")
        run = RemoteRun(Remote("Busy", remote.url), request, expected, "visitor", auth=AUTH, timeout_s=600).start()
        seen: list[tuple[float, str, str]] = []
        while True:  # every state, the last one too: a short run's "running" can fall between two polls (seen on
            state = run.state()  # the Zen 4 EPYC: queued, then done), and it left the queue when it was done
            if not seen or seen[-1][1:] != (state.state, state.detail):
                seen.append((time.monotonic(), state.state, state.detail))
            if state.done:
                break
            time.sleep(0.2)
        run.join(10)
        busy.result(timeout=60)  # the other visitor's comparison finished too
    finally:
        remote.stop()
    final = run.state()
    assert final.state == "done", (final.state, final.detail, seen)
    assert "lost" not in {state for _t, state, _d in seen}, seen
    assert [r["status"] for r in final.rows] == ["ok"], final.rows
    queued = [t for t, state, detail in seen if state == "queued" and "place 1" in detail]
    assert queued, seen
    after_queue = next(t for t, state, _d in seen if t > queued[0] and state != "queued")
    # The test means something only if the wait outlasted every read timeout on the way.
    assert after_queue - queued[0] > CONNECT_TIMEOUT_S + 15, seen


def test_each_visitor_of_a_front_keeps_a_place_of_their_own_on_a_closed_remote_and_strangers_get_none(
    comparison, instances
):
    """The closed remote's one-comparison-per-visitor rule applies per visitor of the front (the logged-in front's
    header names them): two visitors at once are both served; the same visitor twice is refused the second place.
    Without the password nothing runs; on an open remote the header is ignored (a stranger gets one place)."""
    closed = instances["closed"]
    health = closed.health(AUTH)
    expected = Expected(health["model"], health["revision"], "")
    request = GenerationRequest("a lighthouse at dusk", "", 5, 20, 7.5, TINY_SIZE, TINY_SIZE, "dpm++")

    def both(visitors, remote, auth, expected):
        runs = [RemoteRun(remote, request, expected, v, auth=auth, timeout_s=300).start() for v in visitors]
        for run in runs:
            run.join(400)
        return [run.state() for run in runs]

    rack = Remote("Rack A", closed.url)
    two = both(["visitor-1", "visitor-2"], rack, AUTH, expected)
    assert [s.state for s in two] == ["done", "done"], [(s.state, s.detail) for s in two]
    same = both(["visitor-1", "visitor-1"], rack, AUTH, expected)
    assert sorted(s.state for s in same) == ["busy", "done"], [(s.state, s.detail) for s in same]
    stranger = both(["visitor-3"], rack, None, expected)
    assert stranger[0].state == "refused"
    other = instances["other"].health()
    open_remote = Remote("Other model", instances["other"].url)
    spoofed = both(["a", "b"], open_remote, None, Expected(other["model"], other["revision"], ""))
    assert sorted(s.state for s in spoofed) == ["busy", "done"], [(s.state, s.detail) for s in spoofed]


def test_a_visitor_cannot_name_a_remote(comparison, tmp_path):
    """Remotes come from the operator's settings only: the API takes no address, and an address typed into every
    field of a comparison is never connected to."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    bait = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    page = front_page(comparison, tmp_path, "", "")
    demo = ui.layout.build_demo(page)
    port = free_port()
    ui.layout.launch(page, demo, port, prevent_thread_lock=True, quiet=True)
    try:
        from gradio_client import Client

        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        parameters = [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
                      ["named_endpoints"]["/generate"]["parameters"]]  # fmt: skip
        assert parameters == ["prompt", "negative_prompt", "seed", "random_seed", "steps", "guidance", "size",
                              "scheduler", "compare_with"]  # fmt: skip
        client.predict(bait, bait, 1, False, 2, 7.5, SIZE, "dpm++", None, api_name="/generate")
        with pytest.raises(Exception, match="not in the list of choices|400"):  # Gradio's own choice check
            client.predict(bait, bait, 1, False, 2, 7.5, SIZE, "dpm++", bait, api_name="/generate")
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        demo.close()
        listener.close()


def test_remote_groups_in_chromium_on_a_desktop_and_a_phone(comparison, instances, tmp_path, browser):
    """A front page with two remotes (one closed, one open on another model): after Generate, every row of this
    machine and of the closed remote shows its image, grouped and labelled; on a phone (390 px) the groups stay
    apart, after this machine's rows and before the controls."""
    remotes = f"Rack A={instances['closed'].url};Other model={instances['other'].url}"
    page = front_page(comparison, tmp_path, remotes, ":".join(AUTH))
    compute_example(comparison, page.showcase, 0)
    demo = ui.layout.build_demo(page)
    port = free_port()
    ui.layout.launch(page, demo, port, prevent_thread_lock=True, quiet=True)
    here = [b for b in comparison.rows.order if comparison.rows.runs_here(b)]
    try:
        for width, name in ((1400, "desktop"), (390, "phone")):
            visitor = browser.new_page(viewport={"width": width, "height": 1200})
            visitor.goto(f"http://127.0.0.1:{port}/")
            visitor.get_by_text("Built-in example 1").first.wait_for(timeout=60_000)
            visitor.get_by_role("button", name="Generate on every row").click()
            visitor.get_by_text("done: ").first.wait_for(timeout=300_000)
            visitor.get_by_text("Your comparison").first.wait_for(timeout=300_000)
            headers = visitor.locator(".remote-header:not(.remote-header *)")  # Gradio repeats a class inside
            assert headers.count() == 2
            assert "Rack A" in headers.nth(0).inner_text() and "Other model" in headers.nth(1).inner_text()
            assert "not comparable" in headers.nth(1).inner_text()
            groups = visitor.locator(".remote-rows:not(.remote-rows *)")
            loaded = groups.nth(0).locator(".row-image img")
            visitor.wait_for_function(
                f"() => [...document.querySelectorAll('.remote-rows')][0].querySelectorAll('.row-image img').length"
                f" >= {len(here)}",
                timeout=60_000,
            )
            assert loaded.count() >= len(here)
            for i in range(loaded.count()):  # each one really drawn (scrolled to: the page loads images lazily)
                loaded.nth(i).scroll_into_view_if_needed()
                visitor.wait_for_function(
                    "img => img.complete && img.naturalWidth > 0", arg=loaded.nth(i).element_handle()
                )
            empty_frames = groups.nth(1).locator(".row-image")
            assert all(not empty_frames.nth(i).is_visible() for i in range(empty_frames.count()))  # no empty frame
            local_images = visitor.locator(".rows-on-phone:not(.remote-rows) .row-image img")
            assert local_images.count() >= len(here)
            visitor.screenshot(path=str(tmp_path / f"remotes-{name}.png"), full_page=True)
            last_local = local_images.nth(local_images.count() - 1).bounding_box()
            header_box = headers.nth(0).bounding_box()
            assert header_box["y"] > last_local["y"], (name, header_box, last_local)  # grouped apart, after
            if name == "phone":
                prompt_box = visitor.get_by_label("Prompt", exact=True).bounding_box()
                remote_box = groups.nth(0).bounding_box()
                assert remote_box["y"] < prompt_box["y"], (remote_box, prompt_box)  # the answer before the controls
            if name == "desktop":  # the second tab: the live remotes first, with their own example's figures
                visitor.get_by_role("tab", name="Same comparison on other CPUs").click()
                visitor.get_by_text("Live remotes").first.wait_for(timeout=30_000)
                visitor.get_by_text("its example 1").first.wait_for(timeout=30_000)
                assert "not on this CPU" in visitor.content() or "ready" in visitor.content()
            visitor.close()
    finally:
        demo.close()


def test_the_operators_remote_settings_are_checked_and_the_hub_token_goes_to_hugging_face_only():
    from harness.machines.remotes import credentials, on_hugging_face, parse_remotes

    assert parse_remotes("Xeon 6 (AMX)=https://a.hf.space/; Rack=http://10.0.0.5:7860/") == [
        Remote("Xeon 6 (AMX)", "https://a.hf.space/"),
        Remote("Rack", "http://10.0.0.5:7860/"),
    ]
    for bad in ("no-label", "A=ftp://x", "=http://x", "A=http://x;A=http://y"):
        with pytest.raises(ValueError, match="remote"):
            parse_remotes(bad)
    assert credentials("") is None and credentials("u:p:q") == ("u", "p:q")
    with pytest.raises(ValueError, match="user:password"):
        credentials("just-a-password")
    assert on_hugging_face("https://owner-name.hf.space/") and not on_hugging_face("http://10.0.0.5:7860/")
    done = subprocess.run([sys.executable, "app.py", "--model", "tiny", "--remotes", "oops"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and "app.py: remote 'oops'" in done.stderr and "Traceback" not in done.stderr

"""The `/generate` contract (`harness.api`) and every reader of it: the page's layout, the handler, the admission
validator, the remote client's reading of another instance's outputs, and the README's call over plain HTTP."""

from __future__ import annotations

import inspect
import json
import re
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY_SIZE, FakeBackend, free_port, make_comparison

import ui.context
import ui.gradio_queue
import ui.handlers
import ui.layout
from backends import backend_ids
from core.request import GenerationRequest, LoadSettings
from harness.api import GENERATE_INPUTS, INPUT_NAMES, GenerateOutputs, generate_inputs, request_fields
from harness.records.showcase import Showcase
from harness.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def parameters(function) -> tuple[str, ...]:
    """A handler's `/generate` parameters: all but Gradio's own (the request and the progress bar)."""
    return tuple(p for p in inspect.signature(function).parameters if p not in ("request", "progress"))


def generate_dependency(demo) -> dict:
    return next(d for d in demo.config["dependencies"] if d.get("api_name") == "generate")


def test_the_handler_and_the_validator_take_the_inputs_of_the_spec_in_its_order(app_page):
    assert parameters(ui.handlers.make_generate(app_page)) == INPUT_NAMES
    assert parameters(ui.gradio_queue.make_admit(app_page)) == INPUT_NAMES
    refusals = ui.gradio_queue.make_admit(app_page)(*(i.example for i in GENERATE_INPUTS))
    assert len(refusals) == len(INPUT_NAMES)  # Gradio wants one verdict per input


def test_the_page_wires_the_spec_inputs_and_outputs(app_page):
    demo = ui.layout.build_demo(app_page)
    generate = generate_dependency(demo)
    labels = [demo.blocks[i].label for i in generate["inputs"]]
    assert len(labels) == len(INPUT_NAMES)
    assert labels[: INPUT_NAMES.index("random_seed") + 1] == ["Prompt", "Negative prompt", "Seed", "Random seed"]
    assert labels[INPUT_NAMES.index("size")].startswith("Resolution")
    assert labels[INPUT_NAMES.index("compare_with")] == "Compare the baseline with"
    assert len(generate["outputs"]) == len(app_page.outputs) == len(GenerateOutputs(len(backend_ids())))
    figures = demo.blocks[generate["outputs"][GenerateOutputs.FIGURES]]
    assert type(figures).__name__ == "JSON"


def test_a_request_survives_the_inputs_a_front_sends_a_remote(comparison):
    """`generate_inputs` (the remote client's) read back the way the handler reads them gives the same request."""
    request = GenerationRequest("a lighthouse", "fog", 7, 4, 6.5, TINY_SIZE, TINY_SIZE, "euler")
    values = dict(zip(INPUT_NAMES, generate_inputs(request), strict=True))
    assert values["random_seed"] is False and values["compare_with"] is None
    fields = request_fields(**{k: v for k, v in values.items() if k not in ("random_seed", "compare_with")})
    assert comparison.validate(**fields) == request


def test_the_outputs_a_handler_yields_are_read_back_by_name_and_by_a_remote(app_page):
    final = list(
        ui.handlers.make_generate(app_page)(
            "a red barn", "", 3, False, 2, 7.5, f"{TINY_SIZE}x{TINY_SIZE}", "dpm++", None, progress=lambda *a, **k: None
        )
    )[-1]
    outputs = app_page.outputs
    assert len(final) == len(outputs)
    named = outputs.read(final)
    assert named["seed"] == 3 and named["figures"]["order"] == app_page.comparison.rows.order
    assert named["awaiting"] is None and named["groups"] == []
    assert outputs.assemble(named, named["images"], named["cards"], named["groups"]) == final
    figures, images = GenerateOutputs.figures_and_images(final)  # what a front reads of this page as a remote
    assert figures == named["figures"]
    assert images == dict(zip(app_page.comparison.rows.order, named["images"], strict=True))
    with pytest.raises(ValueError, match="cards"):
        outputs.assemble(named, named["images"], named["cards"][:-1], [])


def readme_http_call() -> tuple[str, list]:
    """The README's plain-HTTP call: its URL path and the inputs it posts."""
    block = re.search(r"```bash\n(curl [^`]*?/gradio_api/call/generate[^`]*?)```", README, re.S)
    assert block, "the README shows no plain-HTTP call of /generate"
    path = re.search(r"http://localhost:7860(/gradio_api/call/generate)\b", block.group(1)).group(1)
    body = re.search(r"-d '([^']*)'", block.group(1)).group(1)
    return path, json.loads(body)["data"]


def test_the_readme_documents_every_input_of_the_spec():
    _path, data = readme_http_call()
    assert data == [i.example for i in GENERATE_INPUTS]
    table = re.findall(r"^\| `(\w+)` \|", README.split("## API", 1)[1], re.M)
    assert tuple(table[: len(INPUT_NAMES)]) == INPUT_NAMES


def test_the_readme_call_works_over_plain_http_as_written(tiny_model, cache_dir, tmp_path):
    """The README's curl call, sent as it is written (512x512, 20 steps) to a page of cheap rows compiled for 512."""
    path, data = readme_http_call()
    fakes = {b: FakeBackend(b) for b in backend_ids()}
    settings = LoadSettings(sizes=(512,), threads=2, cache_dir=cache_dir)
    comparison = make_comparison(tiny_model, backend_ids(), settings, lambda b: fakes[b], safety_checker=False)
    comparison.load_all()
    page = ui.context.make_page(comparison, Showcase(tmp_path / "showcase", "test machine"), Settings(queue_size=4))
    demo = ui.layout.build_demo(page)
    port = free_port()
    ui.layout.launch(page, demo, port, prevent_thread_lock=True, quiet=True)
    try:
        base = f"http://127.0.0.1:{port}"
        posted = urllib.request.Request(
            base + path, json.dumps({"data": data}).encode(), {"Content-Type": "application/json"}
        )
        event_id = json.load(urllib.request.urlopen(posted, timeout=30))["event_id"]
        with urllib.request.urlopen(f"{base}{path}/{event_id}", timeout=120) as stream:
            events = stream.read().decode()
    finally:
        demo.close()
    complete = re.search(r"event: complete\ndata: (.*)\n", events)
    assert complete, events[-2000:]
    final = json.loads(complete.group(1))
    assert len(final) == len(GenerateOutputs(len(backend_ids()))), len(final)  # plain HTTP: every output
    figures, images = GenerateOutputs.figures_and_images(final)
    assert list(images) == figures["order"]
    assert figures["request"]["prompt"] == data[0] and figures["request"]["height"] == 512
    assert [r["status"] for r in figures["rows"]] == ["ok"] * len(backend_ids())


def test_an_api_client_receives_every_output_but_the_page_states(server, app_page):
    from gradio_client import Client

    out = Client(server, verbose=False).predict(
        *(i.example for i in GENERATE_INPUTS[:6]), f"{TINY_SIZE}x{TINY_SIZE}", "dpm++", None, api_name="/generate"
    )
    assert len(out) == app_page.outputs.api_len()
    figures, images = GenerateOutputs.figures_and_images(out)
    assert figures["order"] == app_page.comparison.rows.order and list(images) == figures["order"]

"""Images per minute with K generations in flight on one OpenVINO pipeline compiled in OpenVINO's throughput
mode (`--throughput K`), beside the latency mode's one at a time."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace

from backends.openvino_loading import load_static_pipelines
from backends.pipeline import run_pipeline


class _RequestAdapter:
    """An InferRequest that optimum-intel's components can call like the CompiledModel they normally hold,
    so each throughput thread has its own requests on the shared compiled model."""

    def __init__(self, request):
        self.request = request

    def __call__(self, inputs, share_inputs=True):
        return self.request.infer(inputs, share_inputs=share_inputs)


def throughput(ir_dir, settings, request, latents, in_flight: int, images: int) -> dict:
    """Compile the row's IR again with OpenVINO's THROUGHPUT hint for `in_flight` requests, then run `images`
    generations with `in_flight` at once (one InferRequest per generation per component; OpenVINO's streams run
    them in parallel). Returns images per minute and the number of streams OpenVINO chose."""

    size = request.height
    pipe = load_static_pipelines(ir_dir, replace(settings, sizes=(size,)), lambda _: None, in_flight)[size]
    scheduler_config = settings.scheduler_config
    streams = int(pipe.unet.request.get_property("NUM_STREAMS")) if hasattr(pipe.unet.request, "get_property") else 0

    def clone():
        twin = copy.copy(pipe)
        for name in ("unet", "text_encoder", "vae_decoder"):
            component = copy.copy(getattr(pipe, name))
            component.request = _RequestAdapter(getattr(pipe, name).request.create_infer_request())
            setattr(twin, name, component)
        twin.vae = copy.copy(pipe.vae)
        twin.vae.decoder = twin.vae_decoder
        return twin

    remaining = list(range(images))
    lock = threading.Lock()

    def worker(twin):
        while True:
            with lock:
                if not remaining:
                    return
                remaining.pop()
            run_pipeline(twin, scheduler_config, request, latents, lambda *_: None)

    twins = [clone() for _ in range(in_flight)]
    run_pipeline(twins[0], scheduler_config, request, latents, lambda *_: None)  # warm-up
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(t,)) for t in twins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"images_per_min": images * 60 / (time.perf_counter() - start), "streams": streams}

"""Images per minute with K generations in flight on one compiled OpenVINO pipeline (`--throughput K`)."""

from __future__ import annotations

import copy
import threading
import time


class _RequestAdapter:
    """An InferRequest that optimum-intel's components can call like the CompiledModel they normally hold,
    so each throughput thread has its own requests on the shared compiled model."""

    def __init__(self, request):
        self.request = request

    def __call__(self, inputs, share_inputs=True):
        return self.request.infer(inputs, share_inputs=share_inputs)


def throughput(pipe, scheduler_config, request, latents, in_flight: int, images: int) -> float:
    """Images per minute with `in_flight` generations running at once on one compiled OpenVINO pipeline
    (one InferRequest per generation per component; OpenVINO streams run them in parallel)."""
    from backends.pipeline import run_pipeline

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
    return images * 60 / (time.perf_counter() - start)

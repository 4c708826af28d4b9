"""The one way every row runs a diffusers-style pipeline: its `__call__`, on the caller's latents."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from core.request import SCHEDULERS, GenerationRequest, StageCallback, StepCallback


def make_scheduler(scheduler_id: str, base_config):
    """The requested scheduler, built from the model's own scheduler config (identical on every row)."""
    import diffusers

    class_name, _label = SCHEDULERS[scheduler_id]
    return getattr(diffusers, class_name).from_config(base_config)


def run_pipeline(
    pipe,
    base_scheduler_config,
    request: GenerationRequest,
    latents,
    on_step: StepCallback,
    on_stage: StageCallback = lambda *_: None,
    scheduler=None,
):
    """Call `pipe` exactly as a diffusers user would, on the caller's initial latents.

    A fresh generator per call (used by ancestral schedulers) keeps rows independent of one another and of
    any global RNG state. `output_type="np"` as in the source blog's measurements. The pipeline's own
    `encode_prompt`, `vae.decode` and `image_processor.postprocess` are timed in place (`on_stage`); the
    denoising loop lies between them.
    """
    import torch

    # A row whose work has its own scheduler (the few-step row's LCMScheduler) hands it in; the others build the
    # requested one.
    pipe.scheduler = scheduler or make_scheduler(request.scheduler, base_scheduler_config)

    def step_end(_pipe, step_index, _timestep, callback_kwargs):
        on_step(step_index + 1, request.steps)
        return callback_kwargs

    with (
        torch.no_grad(),
        _timed(pipe, "encode_prompt", "text_encoding", on_stage),
        _timed(pipe.vae, "decode", "vae_decoding", on_stage),
        _timed(pipe.image_processor, "postprocess", "vae_decoding", on_stage),  # latents' image to pixels
    ):
        result = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            height=request.height,
            width=request.width,
            latents=latents.clone(),
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="np",
            callback_on_step_end=step_end,
        )
    return np.asarray(result.images[0], dtype=np.float32)


@contextmanager
def _timed(owner, method: str, stage: str, on_stage: StageCallback):
    """Time every call of `owner.method` during the block. diffusers has no stage hooks for a whole pipeline
    call, and the pipelines of every row (diffusers and optimum-intel alike) call the methods timed here, so
    wrapping them on the instance measures the same stages on every row."""
    had_own = method in vars(owner)
    original = getattr(owner, method)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            on_stage(stage, start, time.perf_counter())

    setattr(owner, method, timed)
    try:
        yield
    finally:
        if had_own:
            setattr(owner, method, original)
        else:
            delattr(owner, method)

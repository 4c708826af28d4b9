"""Visitor admission on Gradio's queue. The only code that reads Gradio's private queue is here."""

from __future__ import annotations

import logging

import gradio as gr

from harness.api import INPUT_NAMES, VISITOR_HEADER

from .context import Page

log = logging.getLogger(__name__)


def queued_comparisons(demo: gr.Blocks) -> tuple[list, list]:
    """(running, waiting) comparison events in Gradio's own queue, with their requests. Gradio has no public API for
    this: the queue's attributes read here were checked against Gradio 6.31."""
    queue = demo._queue

    def comparisons(events):
        return [e for e in events if e is not None and getattr(e.fn, "api_name", None) == "generate"]

    running = comparisons(e for job in queue.active_jobs if job for e in job)
    waiting = comparisons(e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue))
    return running, waiting


def queue_holdings(demo: gr.Blocks, key):
    """`holdings(client)` for `FairShare`: whether `client` has a comparison running, and its place in the queue,
    each event's client being `key(request, username)`."""

    def holdings(client: str) -> tuple[bool, int | None]:
        running, waiting = queued_comparisons(demo)
        place = next((i + 1 for i, e in enumerate(waiting) if key(e.request, e.username) == client), None)
        return any(key(e.request, e.username) == client for e in running), place

    return holdings


def visitors_waiting(demo: gr.Blocks) -> bool:
    """Whether any visitor's comparison is running or queued (the further examples wait until none is)."""
    return any(queued_comparisons(demo))


def visitor_key(page: Page, request, username: str | None = None) -> str:
    """Who a request comes from, for the one-comparison-per-visitor rule: its client (behind the proxies the operator
    trusts); and for a caller logged in with this instance's `--auth` (a front page, whose operator holds the
    password), the front's visitor its header names, so that each visitor of a front keeps a place of their own
    here. The header of a caller that did not log in is ignored: a stranger cannot take more places by it."""
    client = page.clients.key(request)
    if request is None or not page.settings.auth:
        return client
    username = username or getattr(request, "username", None)
    forwarded = request.headers.get(VISITOR_HEADER.lower()) if request.headers is not None else None
    if username and forwarded:
        return f"{client} {username} {str(forwarded)[:64]}"
    return client


def make_admit(page: Page):
    """Gradio's `validator` of the generate event: runs before the request is queued and refuses a second one from
    the same client, naming its place. Its parameters are `harness.api.GENERATE_INPUTS`, in order."""

    def admit(
        prompt, negative_prompt, seed, random_seed, steps, guidance, size, scheduler, compare_with=None,
        request: gr.Request = None,
    ):  # fmt: skip
        # Gradio hands the validator the event's inputs, and the request only to a parameter annotated as one.
        refusal = None
        if page.fair_share and request:
            client = visitor_key(page, request)
            page.clients.observe(client, forwarded=bool(request.headers.get("x-forwarded-for")))
            refusal = page.fair_share.admit(client)
        return [gr.validate(refusal is None, refusal or "")] + [gr.validate(True, "")] * (len(INPUT_NAMES) - 1)

    return admit

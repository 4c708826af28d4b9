"""Run a heavy build (IR export, int8 quantization) in a child process, with its log lines as the row's progress."""

from __future__ import annotations


class _QueueHandler:
    """Forwards the child's log lines to the parent, which shows the latest one as the row's progress."""

    def __init__(self, messages):
        import logging

        self.handler = logging.Handler(logging.INFO)
        self.handler.emit = lambda record: messages.put(("progress", record.getMessage()))


def _child_main(target, args, messages) -> None:
    import logging

    try:  # Linux: die with the parent, so a killed app leaves no orphan export eating memory
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    logging.basicConfig(level=logging.WARNING)
    for name in ("backends", "harness"):
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).addHandler(_QueueHandler(messages).handler)
    try:
        target(*args)
    except BaseException as exc:
        messages.put(("error", f"{type(exc).__name__}: {str(exc).strip()[:500]}"))
        raise


def run_in_child(target, args: tuple, progress, what: str) -> None:
    """Run `target(*args)` in a fresh process and wait, reporting its progress; re-raise its error here.

    Export and quantization peak at several times the model's size; in a child that memory goes back to the
    system when it exits instead of staying in the app's heap, and a crash there cannot take the app down.
    """
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    child = ctx.Process(target=_child_main, args=(target, args, messages), name=what, daemon=True)
    child.start()
    latest, error = "", None
    while True:
        child.join(timeout=1.0)
        try:
            while True:
                kind, text = messages.get_nowait()
                if kind == "error":
                    error = text
                else:
                    latest = text
        except queue.Empty:
            pass
        if not child.is_alive():
            break
        progress(f"{what}{': ' + latest if latest else ''}")  # the card adds the elapsed time
    if child.exitcode != 0:
        if error is None:
            error = f"exit code {child.exitcode}" + (" (killed: out of memory?)" if child.exitcode == -9 else "")
        raise RuntimeError(f"{what} failed: {error}")

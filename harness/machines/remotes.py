"""Remote instances: other instances of this app whose rows the page shows beside its own, run at the same time.

A remote is another instance of this same app (the same image on another Space, a cloud VM, a box in the rack), named
by the operator only (`--remotes "Xeon 6 (AMX)=https://..."`, never by a visitor). Each comparison calls every
remote's own `/generate` with Gradio's client (`gradio_client`: its queue, its streaming, its `auth` and
`hf_token`), in a `RemoteRun` per remote, while the local rows run: other machines cannot disturb a local timed
section, and a comparison takes as long as its slowest machine. A remote that is down, slow, busy, closed, another
version or on another model never touches the local rows: its run ends in a state that says which, within its
deadline, and the next comparison tries again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core.request import GenerationRequest
from harness.api import API_VERSION, VISITOR_HEADER, GenerateOutputs, generate_inputs
from harness.machines.runs import CONNECT_TIMEOUT_S, Expected, MachineRun, RunState

log = logging.getLogger(__name__)

IMAGE_PREFIX = "sbs-remote-images-"  # under the system's temporary directory: Gradio hands the page files from there
# The most a live remote's event stream stays quiet: Gradio sends a heartbeat on it every 15 s while a job waits in
# its queue or runs, so a shorter read timeout takes a busy remote for a lost one.
STREAM_READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Remote:
    label: str  # what the page calls it, e.g. "Xeon 6 (AMX)"
    url: str  # its address (a Space's URL or id, or http://host:port/)


def parse_remotes(setting: str) -> list[Remote]:
    """`Label=URL` entries separated by `;` (the operator's `--remotes`). A malformed entry is an error naming it."""
    remotes = []
    for entry in (e.strip() for e in setting.split(";")):
        if not entry:
            continue
        label, sep, url = entry.partition("=")
        label, url = label.strip(), url.strip()
        parsed = urlparse(url)
        if not sep or not label or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"remote {entry!r}: expected Label=http(s)://host[:port]/ (entries separated by ';')")
        if any(r.label == label for r in remotes):
            raise ValueError(f"remote label {label!r} is used twice")
        remotes.append(Remote(label, url))
    return remotes


class RemoteRun(MachineRun):
    """Calls one remote's `/generate` for one request with Gradio's client, polling its job."""

    def __init__(
        self,
        remote: Remote,
        request: GenerationRequest,
        expected: Expected,
        visitor: str,
        auth: tuple[str, str] | None = None,
        token: str | None = None,
        timeout_s: float = 600.0,
        image_dir: Path | None = None,
    ):
        super().__init__(remote.label, expected, timeout_s, Path(image_dir or tempfile.mkdtemp(prefix=IMAGE_PREFIX)))
        self.remote = remote
        self.inputs = generate_inputs(request)
        self.visitor = visitor
        self.auth = auth
        self.token = token

    def _call(self) -> None:
        from gradio_client.exceptions import AuthenticationError

        began = time.perf_counter()
        # The visitor's key travels as a header; a remote believes it only from a caller that logged in (its
        # operator's front), so a stranger cannot spend a closed remote's places.
        headers = {VISITOR_HEADER: self.visitor}
        try:
            client = connect(self.remote.url, self.auth, self.token, headers, str(self.image_dir))
            health = ask_health(client)
        except AuthenticationError:
            return self._end(RunState.REFUSED, "refused our credentials (SBS_REMOTE_AUTH / HF_TOKEN)")
        except Exception as exc:
            log.info("remote %s unreachable: %r", self.label, exc)
            return self._end(
                RunState.UNREACHABLE, f"unreachable within {CONNECT_TIMEOUT_S:.0f} s ({type(exc).__name__})"
            )
        self._update(health=health, connect_s=time.perf_counter() - began, answered=time.time())
        problem = incomparable(health, self.expected)
        if problem:
            return self._end(RunState.NOT_COMPARABLE, problem)
        job = client.submit(*self.inputs, api_name="/generate")
        if self._follow(job):
            self._answer(job)

    def _follow(self, job) -> bool:
        """Show the job's place in the remote's queue and its rows as they stream, until it is done (True) or the
        run is stopped (False, the job cancelled)."""
        seen = 0
        while not job.done():
            stop = self.stopped()
            if stop is not None:
                job.cancel()
                self._end(stop.state, stop.detail)
                return False
            status = job.status()
            place = getattr(status, "rank", None)
            outputs = job.outputs()
            if len(outputs) > seen:
                seen = len(outputs)
                self._take(outputs[-1])
            elif place is not None and getattr(status.code, "name", "") == "IN_QUEUE":
                eta = getattr(status, "eta", None)
                about = f", about {eta:.0f} s to go by its estimate" if eta else ""
                self._update(state=RunState.QUEUED, detail=f"busy: waiting in its queue, place {place + 1}{about}")
            time.sleep(0.2)
        return True

    def _answer(self, job) -> None:
        """The job's final outputs, or why there are none in the remote's words."""
        from gradio_client.exceptions import AppError, ValidationError

        try:
            final = job.result(timeout=5)
        except ValidationError as exc:  # its fair-share rule or its limits
            return self._end(RunState.BUSY, validation_words(str(exc)))
        except AppError as exc:
            return self._end(RunState.FAILED, str(exc)[:300])
        except Exception as exc:
            if "Queue is full" in str(exc):
                return self._end(RunState.BUSY, "its queue is full")
            detail = f"lost contact mid-run ({type(exc).__name__}); the next comparison tries again"
            return self._end(RunState.LOST, detail)
        self._take(final)
        self._finish()

    def _take(self, outputs) -> None:
        """A streamed update of the remote's `/generate` outputs: its figures and one image per row."""
        figures, files = GenerateOutputs.figures_and_images(outputs)
        images = {b: path for b, path in files.items() if isinstance(path, str) and Path(path).is_file()}
        rows = [r for r in figures.get("rows", []) if isinstance(r, dict)]
        self._show(rows, images, latents_sha256=figures.get("latents_sha256"))


def connect(url: str, auth, token, headers, download_files):
    """Gradio's client for `url`: without a login first, and with `auth` when the remote asks for one (one setting
    serves open and closed remotes alike; a login to an open instance fails). The Hugging Face token goes to
    Hugging Face Spaces only, never to another host. Requests time out after CONNECT_TIMEOUT_S, except reads of the
    job's event stream, which a busy remote keeps quiet between heartbeats (STREAM_READ_TIMEOUT_S)."""
    import httpx
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    token = token if on_hugging_face(url) else None

    def client(login):
        return Client(
            url, token=token, auth=login, headers=headers,
            httpx_kwargs={"timeout": httpx.Timeout(CONNECT_TIMEOUT_S, read=STREAM_READ_TIMEOUT_S)},
            download_files=download_files, verbose=False, analytics_enabled=False,
        )  # fmt: skip

    try:
        return client(None)
    except AuthenticationError:
        if auth is None:
            raise
    try:
        return client(auth)
    except ValueError as exc:  # Gradio answers a wrong password with 400, which the client reports as a ValueError
        if str(exc).startswith("Could not login"):
            raise AuthenticationError(str(exc)) from None
        raise


def ask_health(client) -> dict:
    """The remote's `/health`, within CONNECT_TIMEOUT_S (the client's own reads may wait longer: see `connect`)."""
    return client.submit(api_name="/health").result(timeout=CONNECT_TIMEOUT_S)


def on_hugging_face(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host == "huggingface.co" or host.endswith(".hf.space")


def incomparable(health: dict, expected: Expected) -> str:
    """Why a remote's images would not be comparable with the page's ("" when they are): another request schema,
    another model or revision."""
    if not isinstance(health, dict) or health.get("api") != API_VERSION:
        got = health.get("api") if isinstance(health, dict) else None
        return f"another app version (its API {got}, this page's {API_VERSION}): not called"
    if health.get("model") is None:
        return "its model is not loaded yet"
    if (health.get("model"), health.get("revision")) != (expected.model_id, expected.revision):
        return (
            f"another model: it runs `{health.get('model')}` ({str(health.get('revision'))[:12]}), this page "
            f"`{expected.model_id}` ({expected.revision[:12]}): its images would not be comparable"
        )
    return ""


def validation_words(message: str) -> str:
    """The remote's refusal in its own words, without the client's "1 parameter(s) failed validation: - prompt:"."""
    words = re.sub(r"^\d+ parameter\(s\) failed validation:\s*", "", message.strip())
    return re.sub(r"^- \w+:\s*", "", words)[:300]


def visitor_token(secret: bytes, key: str) -> str:
    """The visitor's key as a remote sees it: stable per visitor, not their address."""
    return hashlib.sha256(secret + key.encode()).hexdigest()[:16]


def credentials(setting: str) -> tuple[str, str] | None:
    """ "user:password" (the operator's --auth or --remote-auth) as Gradio's `auth` pair; "" is none."""
    if not setting:
        return None
    user, sep, password = setting.partition(":")
    if not sep or not user or not password:
        raise ValueError("expected user:password")
    return user, password


class RemoteSet:
    """The operator's remote instances and how to reach them (a `MachineGroup`): one `RemoteRun` per remote per
    comparison."""

    def __init__(
        self,
        remotes: list[Remote],
        auth: tuple[str, str] | None = None,
        token: str | None = None,
        timeout_s: float = 600.0,
        image_dir: Path | None = None,
    ):
        self.remotes = remotes
        self.auth = auth
        self.token = token
        self.timeout_s = timeout_s
        self.image_dir = Path(image_dir or tempfile.mkdtemp(prefix=IMAGE_PREFIX))
        self._secret = secrets.token_bytes(16)  # visitors' keys reach remotes as hashes under this page's secret

    @classmethod
    def from_settings(cls, settings) -> RemoteSet:
        """The remotes of `settings` (the operator's --remotes, --remote-auth, --remote-timeout-s), and HF_TOKEN
        for private Spaces."""
        return cls(
            parse_remotes(settings.remotes),
            credentials(settings.remote_auth),
            os.environ.get("HF_TOKEN") or None,
            settings.remote_timeout_s,
        )

    def labels(self) -> list[str]:
        return [r.label for r in self.remotes]

    def start(self, request: GenerationRequest, expected: Expected, visitor_key: str) -> list[RemoteRun]:
        visitor = visitor_token(self._secret, visitor_key)
        return [
            RemoteRun(
                remote, request, expected, visitor, self.auth, self.token, self.timeout_s,
                self.image_dir / _dir_name(remote),
            ).start()
            for remote in self.remotes
        ]  # fmt: skip

    def healths(self) -> dict[str, dict | str]:
        """Each remote's `/health`, or why it did not answer (asked at once, each within CONNECT_TIMEOUT_S)."""
        answers: dict[str, dict | str] = {}

        def ask(remote: Remote) -> None:
            try:
                client = connect(remote.url, self.auth, self.token, None, False)
                answers[remote.label] = ask_health(client)
            except Exception as exc:
                answers[remote.label] = f"unreachable ({type(exc).__name__})"

        threads = [threading.Thread(target=ask, args=(r,), daemon=True) for r in self.remotes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(2 * CONNECT_TIMEOUT_S)
        return {r.label: answers.get(r.label, "no answer in time") for r in self.remotes}

    def serving_now(self) -> str:
        return ""  # each remote admits its own visitors: the front runs one comparison at a time


def _dir_name(remote: Remote) -> str:
    return hashlib.sha256(remote.label.encode()).hexdigest()[:12]

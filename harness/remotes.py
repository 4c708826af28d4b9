"""Rows from other machines: the same request through other instances of this app (remotes), at the same time as the
local rows.

A remote is another instance of this same app (the same image on another Space, a cloud VM, a box in the rack), named
by the operator only (`--remotes "Xeon 6 (AMX)=https://..."`, never by a visitor). Each comparison calls every
remote's own `/generate` API with Gradio's client (`gradio_client`: its queue, its streaming, its `auth` and
`hf_token`), in a thread per remote, while the local rows run: the remotes are other machines, so they cannot
disturb a local timed section, and a comparison takes as long as its slowest machine. A remote that is down, slow,
busy, closed, another version or on another model never touches the local rows: its `RemoteRun` ends in a state
that says which, within `timeout_s`, and the next comparison tries again.

Every remote draws the same starting noise as the page (`core.request.initial_latents` is the same on every CPU
kind) and returns its hash; a mismatch is shown, not hidden.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

API_VERSION = 1  # `/health`'s "api": the /generate inputs and figures a front relies on; raised when they change
VISITOR_HEADER = "X-SBS-Visitor"  # the front's visitor, for a remote's one-comparison-per-visitor rule
CONNECT_TIMEOUT_S = 10.0  # connecting, logging in and `/health` each answer within this, or the remote is unreachable
# The most a live remote's event stream stays quiet: Gradio sends a heartbeat on it every 15 s
# (GRADIO_HEARTBEAT_INTERVAL) while a job waits in its queue or runs. A read timeout below that took a remote busy
# with other visitors (or still starting) for one that had gone: its stream timed out after 10 s, and 225 s later the
# job ended "lost".
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


@dataclass
class RemoteState:
    """One remote's part of one comparison, as the page shows it."""

    remote: Remote
    state: str = "connecting"  # connecting | queued | running | done | one of FAILED_STATES
    detail: str = ""  # what the state means here, in words
    health: dict = field(default_factory=dict)  # the remote's `/health` (its CPU, model, rows)
    rows: list[dict] = field(default_factory=list)  # the remote's figures dicts, as its rows finish
    images: dict[str, str] = field(default_factory=dict)  # backend id -> the image's file here
    latents_sha256: str | None = None  # the hash of the starting noise the remote used
    started: float = 0.0  # time.time() of the call, the first answer and the last row
    answered: float | None = None
    finished: float | None = None
    connect_s: float | None = None  # connecting + `/health`: the network round trip, apart from the rows

    @property
    def done(self) -> bool:
        return self.state == "done" or self.state in FAILED_STATES


FAILED_STATES = ("unreachable", "refused", "busy", "not comparable", "failed", "too slow", "lost")


@dataclass(frozen=True)
class Expected:
    """What a remote must match for its images to be comparable with the page's."""

    model_id: str
    revision: str
    latents_sha256: str


class RemoteRun:
    """Calls one remote's `/generate` for one request, in a thread; `state()` is a copy of where it is."""

    def __init__(
        self,
        remote: Remote,
        inputs: list,
        expected: Expected,
        visitor: str,
        auth: tuple[str, str] | None = None,
        token: str | None = None,
        timeout_s: float = 600.0,
        image_dir: Path | None = None,
    ):
        self.remote = remote
        self.inputs = inputs  # /generate's inputs: prompt, negative, seed, random seed (False), steps, ...
        self.expected = expected
        self.visitor = visitor
        self.auth = auth
        self.token = token
        self.timeout_s = timeout_s
        self.image_dir = Path(image_dir or tempfile.mkdtemp(prefix="sbs-remote-images-"))
        self.image_dir.mkdir(parents=True, exist_ok=True)
        self._state = RemoteState(remote, started=time.time())
        self._lock = threading.Lock()
        self.changed = threading.Event()  # set on every change (the page yields when it sees it)
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"remote {remote.label}", daemon=True)

    def start(self) -> RemoteRun:
        self._thread.start()
        return self

    def state(self) -> RemoteState:
        with self._lock:
            s = self._state
            return RemoteState(**{**s.__dict__, "rows": list(s.rows), "images": dict(s.images)})

    def cancel(self) -> None:
        """Stop waiting (the visitor left, or the comparison ended): a job still running there is cancelled."""
        self._cancelled.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _update(self, **changes) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self._state, k, v)
        self.changed.set()

    def _run(self) -> None:
        try:
            self._call()
        except Exception:  # whatever the remote or the network does, the local rows go on
            error_id = secrets.token_hex(4)  # the details (addresses included) go to the log only
            log.exception("remote %s failed (error %s)", self.remote.label, error_id)
            self._update(state="failed", detail=f"failed (error {error_id}, in the log)", finished=time.time())

    def _call(self) -> None:
        from gradio_client.exceptions import AppError, AuthenticationError, ValidationError

        began = time.perf_counter()
        # The visitor's key travels as a header; a remote believes it only from a caller that logged in (its
        # operator's front), so a stranger cannot spend a closed remote's places.
        headers = {VISITOR_HEADER: self.visitor}
        try:
            client = connect(self.remote.url, self.auth, self.token, headers, str(self.image_dir))
            health = ask_health(client)
        except AuthenticationError:
            return self._end("refused", "refused our credentials (SBS_REMOTE_AUTH / HF_TOKEN)")
        except Exception as exc:
            log.info("remote %s unreachable: %r", self.remote.label, exc)
            return self._end("unreachable", f"unreachable within {CONNECT_TIMEOUT_S:.0f} s ({type(exc).__name__})")
        self._update(health=health, connect_s=time.perf_counter() - began, answered=time.time())
        problem = incomparable(health, self.expected)
        if problem:
            return self._end("not comparable", problem)
        job = client.submit(*self.inputs, api_name="/generate")
        deadline = time.monotonic() + self.timeout_s
        seen = 0
        while not job.done():
            if self._cancelled.is_set():
                job.cancel()
                return self._end("failed", "cancelled: the visitor left before it finished")
            if time.monotonic() > deadline:
                job.cancel()
                return self._end("too slow", f"no answer within {self.timeout_s:.0f} s; the next comparison retries")
            status = job.status()
            place = getattr(status, "rank", None)
            outputs = job.outputs()
            if len(outputs) > seen:
                seen = len(outputs)
                self._take(outputs[-1])
            elif place is not None and getattr(status.code, "name", "") == "IN_QUEUE":
                eta = getattr(status, "eta", None)
                about = f", about {eta:.0f} s to go by its estimate" if eta else ""
                self._update(state="queued", detail=f"busy: waiting in its queue, place {place + 1}{about}")
            time.sleep(0.2)
        try:
            final = job.result(timeout=5)
        except ValidationError as exc:  # its fair-share rule or its limits
            return self._end("busy", validation_words(str(exc)))
        except AppError as exc:
            return self._end("failed", str(exc)[:300])
        except Exception as exc:
            if "Queue is full" in str(exc):
                return self._end("busy", "its queue is full")
            return self._end("lost", f"lost contact mid-run ({type(exc).__name__}); the next comparison tries again")
        self._take(final)
        mismatch = self.state().latents_sha256 not in (None, self.expected.latents_sha256)
        self._end("done", "its starting noise differs from this page's: images not comparable" if mismatch else "")

    def _take(self, outputs) -> None:
        """A streamed update of the remote's `/generate` outputs: its figures (output 4) and one image per row
        (outputs 5.., in its row order)."""
        figures = outputs[4] if len(outputs) > 4 and isinstance(outputs[4], dict) else {}
        order = figures.get("order") or []
        images = {}
        for backend, path in zip(order, outputs[5 : 5 + len(order)], strict=False):
            if isinstance(path, str) and Path(path).is_file():
                images[backend] = path
        self._update(
            state="running",
            detail="",
            rows=[r for r in figures.get("rows", []) if isinstance(r, dict)],
            images=images,
            latents_sha256=figures.get("latents_sha256"),
        )

    def _end(self, state: str, detail: str) -> None:
        self._update(state=state, detail=detail, finished=time.time())


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


def prune(directory: Path, keep_s: float = 3600.0) -> None:
    """Delete downloaded images older than `keep_s` (the page's files live an hour, as Gradio's own)."""
    cutoff = time.time() - keep_s
    for child in directory.glob("*"):
        try:
            if child.stat().st_mtime < cutoff:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        except OSError:
            pass


def credentials(setting: str) -> tuple[str, str] | None:
    """ "user:password" (the operator's --auth or --remote-auth) as Gradio's `auth` pair; "" is none."""
    if not setting:
        return None
    user, sep, password = setting.partition(":")
    if not sep or not user or not password:
        raise ValueError("expected user:password")
    return user, password


class RemoteSet:
    """The operator's remotes and how to reach them: one `RemoteRun` per remote per comparison."""

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
        # Under the system's temporary directory: Gradio hands the page files from there.
        self.image_dir = Path(image_dir or tempfile.mkdtemp(prefix="sbs-remote-images-"))
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

    def start(self, inputs: list, expected: Expected, visitor_key: str) -> list[RemoteRun]:
        """Call every remote with `inputs` (its /generate inputs) for the visitor `visitor_key`."""
        for remote in self.remotes:
            prune(self.image_dir / _dir_name(remote))
        visitor = visitor_token(self._secret, visitor_key)
        return [
            RemoteRun(
                remote, inputs, expected, visitor, self.auth, self.token, self.timeout_s,
                self.image_dir / _dir_name(remote),
            ).start()
            for remote in self.remotes
        ]  # fmt: skip

    def healths(self) -> dict[str, dict | str]:
        """Each remote's `/health`, or why it did not answer (asked at once, each within CONNECT_TIMEOUT_S): for the
        second tab."""
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


def _dir_name(remote: Remote) -> str:
    return hashlib.sha256(remote.label.encode()).hexdigest()[:12]


class OtherMachines:
    """Remote instances and cluster kinds together (`harness.cluster.ClusterSet`): the page shows one group each, in
    this order, and calls them all for every comparison."""

    def __init__(self, remotes: RemoteSet | None = None, cluster=None):
        self.cluster = cluster  # the `ClusterSet`, or None (no --cluster)
        self.sets = [s for s in (remotes, cluster) if s is not None]

    @property
    def remotes(self) -> list[Remote]:
        return [r for s in self.sets for r in s.remotes]

    @property
    def timeout_s(self) -> float:
        return max(s.timeout_s for s in self.sets)

    def start(self, inputs: list, expected: Expected, visitor_key: str) -> list:
        return [run for s in self.sets for run in s.start(inputs, expected, visitor_key)]

    def healths(self) -> dict[str, dict | str]:
        return {label: answer for s in self.sets for label, answer in s.healths().items()}

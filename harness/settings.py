"""Settings shared by the app, the benchmark and `harness.prepare`: one dataclass, read from env vars, overridable by
CLI flags. What the rows are loaded with takes its defaults from `core.request.LoadSettings`, the only place
they are written."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from backends import backend_ids
from core.cpu import this_cpu
from core.request import LoadSettings
from harness.compare.comparison import Comparison
from harness.compare.rows import RowSet
from harness.compare.validation import Limits
from harness.models.model_sources import DEFAULT_MODEL, resolve_model
from harness.records.quality_reports import int8_recipe


def own(default):
    """Marks a setting of this instance alone (its address, login and other machines; its cache and threads): a
    cluster's replicas do not take it from the front (`Settings.replica_settings`)."""
    return field(default=default, metadata={"own": True})


@dataclass
class Settings:
    model: str = DEFAULT_MODEL  # hub id, local diffusers dir, "tiny" or "sd15-standin"
    backends: str = ",".join(backend_ids())  # comma-separated row ids, shown in this order
    sizes: str = ""  # comma-separated square sizes; "" = 512 for real models and sd15-standin, 128 for tiny
    strict: bool = False  # error instead of falling back to "tiny" when the model cannot be loaded
    cache_dir: str = own(str(Path.home() / ".cache" / "sd-side-by-side"))  # stand-ins and exported IR
    threads: int = own(0)  # intra-op threads for every row; 0 = the CPUs this process may use
    tome_ratio: float = LoadSettings.tome_ratio
    # the int8 row's recipe: "measured" (what the newest quality run on this model's real weights chose on this CPU
    # kind; the quality-first "hybrid" where none has: harness.records.quality_reports), or forced "full" / "hybrid"
    int8_mode: str = "measured"
    tome_max_downsample: int = LoadSettings.tome_max_downsample
    int8_vae: bool = LoadSettings.int8_vae
    int8_overflow_fix: str = LoadSettings.int8_overflow_fix  # "auto": 7-bit weights only where the CPU lacks VNNI
    int8_source: str = ""  # prebuilt OpenVINO INT8/ToMe pipeline (dir or hub id) instead of building one
    lcm_steps: int = LoadSettings.lcm_steps  # the few-step row's steps (2-8), whatever the request's
    calibration_prompts: int = LoadSettings.calibration_prompts
    calibration_steps: int = LoadSettings.calibration_steps
    steps: int = 20  # the page's default steps and the benchmark's steps (not the calibration's)
    safety_checker: bool = True  # apply the model's safety checker (when it has one) to every row
    public: bool = False  # app only: a public instance (the Space image sets it): strict model, caps, short errors
    max_steps: int = 30  # app only, in public mode: the most steps a visitor may ask for
    max_size: int = 512  # app only, in public mode: the largest image side a visitor may ask for
    host: str = own("127.0.0.1")  # app only: the address to listen on (0.0.0.0: every interface, e.g. a booth's Wi-Fi)
    port: int = own(7860)  # app only
    queue_size: int = own(16)  # app only: visitors beyond this are told the queue is full
    # app only: the proxies in front whose X-Forwarded-For is believed: addresses/networks, or a hop count ("1" on a
    # Space); "" = none (harness.visitors.client_keys)
    trusted_proxies: str = own("")
    # app only: other instances of this app whose rows the page shows beside its own, run at the same time:
    # "Label=URL" entries separated by ";" (harness.machines.remotes); only the operator names them
    remotes: str = own("")
    # app only: "user:password" for remotes closed with --auth (HF_TOKEN goes to private Spaces)
    remote_auth: str = own("")
    remote_timeout_s: float = own(600.0)  # app only: a remote's rows come within this, or its cards say it was too slow
    auth: str = own("")  # app only: "user:password": the page and API only for callers who log in (a closed remote)
    # app only: a Ray cluster's address (host:port) whose machines run the rows, one group per CPU kind
    # (harness.machines.cluster); "" = none, the one-process app
    cluster: str = own("")
    cluster_kinds: str = own("")  # app only, with --cluster: the kinds the page shows, comma-separated; "" = every kind
    cluster_visitors: int = own(4)  # app only, with --cluster: visitors' comparisons the front runs at once
    # app only, the booth screen (/kiosk): the visitor page's address its QR code gives ("" = the address the kiosk's
    # browser reached); how long no visitor asks before a booth comparison is computed (0: never); the booth's prompts
    kiosk_url: str = own("")
    kiosk_idle_s: float = own(300.0)
    booth_prompts: str = own("")  # a file, one prompt a line; "" = assets/booth_prompts.txt
    # app only: the booth screen also shows the latest visitors' comparisons, their prompts on the big screen (strangers
    # type anything: off unless the operator turns it on; one the safety checker flagged never)
    kiosk_visitors: bool = own(False)

    @classmethod
    def from_env(cls, environ=os.environ) -> Settings:
        """SBS_MODEL, SBS_BACKENDS, ... (upper-case field names with the SBS_ prefix). On a Hugging Face Space
        (SPACE_ID set) one proxy stands in front: its hop is trusted unless SBS_TRUSTED_PROXIES says otherwise."""
        values = {"trusted_proxies": "1"} if environ.get("SPACE_ID") else {}
        for f in fields(cls):
            raw = environ.get(f"SBS_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(raw, type(getattr(cls, f.name)))
        return cls(**values)

    @classmethod
    def parser(cls, description: str) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(description=description)
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            kind = type(getattr(cls, f.name))
            if kind is bool:
                parser.add_argument(flag, type=lambda v: _parse(v, bool), metavar="{true,false}")
            else:
                parser.add_argument(flag, type=kind)
        return parser

    def updated(self, args: argparse.Namespace) -> Settings:
        overrides = {k: v for k, v in vars(args).items() if v is not None and hasattr(self, k)}
        return Settings(**{**self.__dict__, **overrides})

    def replica_settings(self) -> dict:
        """What a cluster's replicas take from the front: every setting but this instance's own."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get("own")}

    def backend_ids(self) -> list[str]:
        return [b.strip() for b in self.backends.split(",") if b.strip()]

    def size_list(self) -> tuple[int, ...]:
        if self.sizes:
            return tuple(int(s) for s in self.sizes.split(","))
        return (128,) if self.model == "tiny" else (512,)

    def load_settings(self, sizes: tuple[int, ...]) -> LoadSettings:
        """The rows' settings: every LoadSettings field this class holds, plus the machine's threads."""
        shared = {f.name: getattr(self, f.name) for f in fields(LoadSettings) if hasattr(self, f.name)}
        shared.update(sizes=sizes, threads=self.thread_count(), cache_dir=Path(self.cache_dir))
        shared["int8_source"] = self.int8_source or None
        shared["int8_mode"], shared["int8_mode_note"] = int8_recipe(self.int8_mode, self.model, this_cpu().slug())
        return LoadSettings(**shared)

    def limits(self, sizes: tuple[int, ...]) -> Limits:
        """What a visitor may ask for: the compiled sizes, and in public mode the operator's caps."""
        if not self.public:
            return Limits(sizes=sizes)
        return Limits(sizes, self.max_steps, self.max_size, " on this public demo (the operator's limit)")

    def thread_count(self) -> int:
        return self.threads or len(os.sched_getaffinity(0))


def _parse(raw: str, kind: type):
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    return kind(raw)


def build_comparison(settings: Settings, image_store=None) -> Comparison:
    """The (not yet loaded) comparison the settings describe. The model is found or downloaded by its
    `load_all`, so an app can serve its page while a first download runs. A public instance never falls back to
    the random-weight stand-in (noise under a company's name): the rows say why they are unavailable instead."""
    torch.set_num_threads(settings.thread_count())  # every torch row runs on the same threads as OpenVINO's
    strict = settings.strict or settings.public

    def resolve(progress):
        return resolve_model(settings.model, Path(settings.cache_dir), strict=strict, progress=progress)

    resolve.model_name = settings.model
    rows = RowSet(None, settings.backend_ids(), settings.load_settings(settings.size_list()), resolve=resolve)
    return Comparison(rows, settings.safety_checker, settings.limits(rows.settings.sizes), image_store, settings.public)

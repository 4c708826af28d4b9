"""What the page's handlers share: the comparison and what surrounds it."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.api import GenerateOutputs
from harness.compare.comparison import Comparison
from harness.machines.remotes import RemoteSet
from harness.machines.runs import KeptAlongside, MachineGroup, OtherMachines
from harness.records.booth import VisitorsShown, booth_prompts
from harness.records.examples import make_showcase
from harness.records.quality_reports import latest_quality_report
from harness.records.results import LatencyTable, latency_tables
from harness.records.showcase import Showcase
from harness.settings import Settings
from harness.visitors.client_keys import ClientKeys
from harness.visitors.fair_share import FairShare
from harness.visitors.page_images import PageImages
from harness.visitors.wait_estimate import WaitEstimate

log = logging.getLogger(__name__)


@dataclass
class Page:
    """What the page's handlers share: the comparison and what surrounds it. None of it holds a visitor's input:
    a visitor's comparison lives in that visitor's page only."""

    comparison: Comparison
    showcase: Showcase  # the operator's examples as computed here
    settings: Settings  # the page's own settings (default steps, queue size, public mode)
    timings: WaitEstimate  # the latest measured stages, for the wait estimate
    clients: ClientKeys  # who a request comes from (the proxies the operator trusts)
    tables: list[LatencyTable]  # the committed latency tables (results/), read once
    machines: MachineGroup | None = None  # the operator's other machines, run beside the local rows (none: None)
    fair_share: FairShare | None = None  # one comparison per client, once the queue exists (`build_demo`)
    quality: dict | None = None  # the newest quality report (results/quality-*.json), read once; None: there is none
    booth_prompts: list[str] = field(default_factory=list)  # the booth's own prompts (harness.records.booth)
    visitors_shown: VisitorsShown | None = None  # the latest visitors' comparisons for the kiosk (--kiosk-visitors)

    @property
    def outputs(self) -> GenerateOutputs:
        """`/generate`'s outputs on this page: its rows, and its groups of other machines."""
        return GenerateOutputs(len(self.comparison.rows.order), len(self.machines.labels()) if self.machines else 0)

    def kept_alongside(self) -> KeptAlongside | None:
        """The other machines, for the comparisons the app keeps (examples, booth prompts), once the model is known;
        None without other machines."""
        model = self.comparison.rows.model
        return KeptAlongside(self.machines, model) if self.machines is not None and model is not None else None


def make_page(comparison: Comparison, showcase: Showcase | None = None, settings: Settings | None = None) -> Page:
    if comparison.image_store is None:  # the page hands Gradio PNG files written under the row lock
        comparison.image_store = PageImages(Path(tempfile.mkdtemp(prefix="sbs-page-images-")))
    settings = settings or Settings()
    showcase = showcase or make_showcase(comparison)
    clients = ClientKeys(settings.trusted_proxies)
    quality = latest_quality_report(settings.model)
    visitors_shown = VisitorsShown(showcase.machine) if settings.kiosk_visitors else None
    return Page(comparison, showcase, settings, WaitEstimate(), clients, latency_tables(), other_machines(settings),
                quality=quality, booth_prompts=booth_prompts(settings.booth_prompts),
                visitors_shown=visitors_shown)  # fmt: skip


def other_machines(settings: Settings) -> MachineGroup | None:
    """The operator's remote instances, then the cluster's kinds; None when there are neither."""
    groups: list[MachineGroup] = []
    if settings.remotes:
        groups.append(RemoteSet.from_settings(settings))
    if settings.cluster:
        from harness.machines.cluster import ClusterSet  # cluster mode only: `make demo` never imports Ray

        groups.append(ClusterSet.from_settings(settings).connect())
    return OtherMachines(groups) if groups else None

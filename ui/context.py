"""What the page's handlers share: the comparison and what surrounds it."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.client_keys import ClientKeys
from harness.comparison import Comparison
from harness.examples import make_showcase
from harness.fair_share import FairShare
from harness.page_images import PageImages
from harness.quality_reports import latest_quality_report
from harness.remotes import OtherMachines, RemoteSet
from harness.results import LatencyTable, latency_tables
from harness.settings import Settings
from harness.showcase import Showcase
from harness.wait_estimate import WaitEstimate

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
    # the operator's other instances and cluster kinds (`OtherMachines`), run beside the local rows (none: None)
    remotes: OtherMachines | None = None
    fair_share: FairShare | None = None  # one comparison per client, once the queue exists (`build_demo`)
    quality: dict | None = None  # the newest quality report (results/quality-*.json), read once; None: there is none


def make_page(comparison: Comparison, showcase: Showcase | None = None, settings: Settings | None = None) -> Page:
    if comparison.image_store is None:  # the page hands Gradio PNG files written under the row lock
        comparison.image_store = PageImages(Path(tempfile.mkdtemp(prefix="sbs-page-images-")))
    settings = settings or Settings()
    showcase = showcase or make_showcase(comparison)
    remotes = None
    if settings.remotes or settings.cluster:
        cluster = None
        if settings.cluster:
            from harness.cluster import ClusterSet  # cluster mode only: Ray is imported there, never by `make demo`

            cluster = ClusterSet.from_settings(settings).connect()
        remotes = OtherMachines(RemoteSet.from_settings(settings) if settings.remotes else None, cluster)
    clients = ClientKeys(settings.trusted_proxies)
    quality = latest_quality_report(settings.model)
    return Page(comparison, showcase, settings, WaitEstimate(), clients, latency_tables(), remotes, quality=quality)

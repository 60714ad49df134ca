"""Prometheus metrics in a per-app registry (no global state between apps or tests).

Request counts and latencies are labelled by route template (``/documents/{doc_id}``),
never by the raw path, so ids do not explode the label space. Job, document and
chunk counts are read from the database when ``/metrics`` is scraped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.db.models import IngestJob, JobStatus
from rag.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Buckets from 5 ms (a cached lookup) to 2 min (a long generation on CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class StoreCollector(Collector):
    """Reads ingest-job, document and chunk counts from the database at scrape time."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauges (empty when the database cannot be read)."""
        jobs = GaugeMetricFamily("rag_ingest_jobs", "Ingest jobs by status.", labels=["status"])
        docs = GaugeMetricFamily(
            "rag_collection_documents", "Documents per collection.", labels=["collection"]
        )
        chunks = GaugeMetricFamily(
            "rag_collection_chunks", "Chunks per collection.", labels=["collection"]
        )
        try:
            with self.kb.sessions() as session:
                counts = dict(
                    session.execute(
                        select(IngestJob.status, func.count()).group_by(IngestJob.status)
                    ).all()
                )
            for status in JobStatus:
                jobs.add_metric([status.value], float(counts.get(status.value, 0)))
            for info in self.kb.list_collections():
                docs.add_metric([info.name], float(info.documents))
                chunks.add_metric([info.name], float(info.chunks))
        except Exception:  # noqa: BLE001 - a scrape must not fail because the DB is busy
            log.warning("metrics could not read the database", exc_info=True)
        yield jobs
        yield docs
        yield chunks


class Metrics:
    """The app's registry and its request metrics."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds",
            "HTTP request latency (until the response body ends) by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StoreCollector(kb))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The matched route's path template, or a fixed label for unmatched paths."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    if scope.get("path", "").startswith("/static/"):
        return "/static"
    return "unmatched"


class MetricsMiddleware:
    """Count and time every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = route_template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)

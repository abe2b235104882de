"""Prometheus metrics of one app instance (its own registry, so several apps can coexist in tests).

Every label value comes from a fixed set, so no client can grow the number of series: routes are
the app's templates (anything else is ``unmatched``), methods are the standard ones (anything else
is ``other``), statuses are the server's own, error codes and reasons are constants.
"""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OOD_WINDOW = 1000  # photos in the rolling out-of-distribution rate
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
PIPELINE_EVENTS = ("deadline", "cancelled", "inference_failed")


def method_label(method: str) -> str:
    """The method as a label: a standard method, or ``other`` for anything a client invents."""
    return method if method in METHODS else "other"


class Metrics:
    """The service's metrics; names are prefixed ``authlens_``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "authlens_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "authlens_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "authlens_batch_size", "Images per ONNX Runtime call.", buckets=BATCH_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "authlens_inference_seconds",
            "Duration of one ONNX Runtime call.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decode = Histogram(
            "authlens_decode_seconds", "Decoding and resizing one photo.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "authlens_queue_depth",
            "Images admitted and not finished (decoding or waiting for the model).",
            registry=r,
        )
        self.verdicts = Counter(
            "authlens_verdicts", "Verdicts given, per item and per image.", ["level", "verdict"], registry=r
        )
        self.images = Counter("authlens_images_scored", "Photos scored by the model.", registry=r)
        self.ood = Counter(
            "authlens_images_out_of_distribution",
            "Photos outside the training distribution (rate = this / authlens_images_scored_total).",
            registry=r,
        )
        self.ood_rate = Gauge(
            "authlens_out_of_distribution_rate",
            f"Fraction of the last {OOD_WINDOW} scored photos that were out of distribution "
            "(a rising value means the traffic drifted from the training data).",
            registry=r,
        )
        self._ood_window: deque[bool] = deque(maxlen=OOD_WINDOW)
        self._ood_in_window = 0
        self.image_errors = Counter(
            "authlens_image_errors", "Photos refused, by error code.", ["code"], registry=r
        )
        self.rejected = Counter(
            "authlens_rejected", "Requests refused before work, by reason.", ["reason"], registry=r
        )
        self.reloads = Counter("authlens_reloads", "Bundle reloads by outcome.", ["outcome"], registry=r)
        self.pipeline = Counter(
            "authlens_pipeline_images_dropped",
            "Admitted images not scored: past their deadline, request gone (cancelled), or the model "
            "failed on them alone (inference_failed).",
            ["reason"],
            registry=r,
        )
        for event in PIPELINE_EVENTS:
            self.pipeline.labels(event)
        self.model_info = Gauge(
            "authlens_model_info",
            "The bundle being served (value 1).",
            ["name", "version", "bundle_sha256"],
            registry=r,
        )
        self.ready = Gauge("authlens_ready", "1 when a warmed model is serving.", registry=r)

    def set_model(self, name: str, version: str, sha256: str) -> None:
        """Record the served bundle (only one label set at a time)."""
        self.model_info.clear()
        self.model_info.labels(name, version, sha256).set(1)

    def observe_image(self, out_of_distribution: bool) -> None:
        """Count one scored photo and update the out-of-distribution counters and rolling rate."""
        self.images.inc()
        if out_of_distribution:
            self.ood.inc()
        window = self._ood_window
        if len(window) == window.maxlen:
            self._ood_in_window -= window[0]
        window.append(out_of_distribution)
        self._ood_in_window += out_of_distribution
        self.ood_rate.set(self._ood_in_window / len(window))

    def observe_pipeline_event(self, event: str) -> None:
        """Count an image the pipeline dropped (``deadline``, ``cancelled``, ``inference_failed``)."""
        if event in PIPELINE_EVENTS:
            self.pipeline.labels(event).inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

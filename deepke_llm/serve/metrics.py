"""Prometheus metrics of one server (its own registry, so several apps in one process never
share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServeMetrics"]

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    """Requests, documents, tokens, latency, engine calls, batch sizes and queue depth."""

    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("deepke_requests", "HTTP requests by route and status code.",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("deepke_request_seconds", "HTTP request latency by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.documents = Counter("deepke_documents", "Documents extracted (requests and jobs).",
                                 registry=self.registry)
        self.tokens = Counter("deepke_generated_tokens", "Tokens the engine generated.",
                              registry=self.registry)
        self.engine_calls = Counter("deepke_engine_generate_calls",
                                    "Calls of the backend's generate (one per engine batch).",
                                    registry=self.registry)
        self.prompts = Counter("deepke_engine_prompts", "Prompts sent to the backend.",
                               registry=self.registry)
        self.batch_documents = Histogram("deepke_batch_documents",
                                         "Documents gathered into one extraction batch.",
                                         buckets=BATCH_BUCKETS, registry=self.registry)
        self.rejected = Counter("deepke_rejected", "Requests refused because the queue was full.",
                                registry=self.registry)
        depth = Gauge("deepke_queue_depth", "Documents admitted and not yet answered.",
                      registry=self.registry)
        depth.set_function(queue_depth)

    def engine_call(self, prompts: int) -> None:
        """Count one backend ``generate`` call of ``prompts`` prompts."""
        self.engine_calls.inc()
        self.prompts.inc(prompts)

    def batch_done(self, documents: int, tokens: int, seconds: float) -> None:
        """Count one extraction batch the worker ran."""
        self.documents.inc(documents)
        self.tokens.inc(tokens)
        self.batch_documents.observe(documents)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)

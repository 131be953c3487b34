"""Prometheus metrics (`GET /metrics`): requests and latencies per route pattern, CDS hook calls per service, the
cards' rules and indicators, case-feature failures and rules not evaluated (the fail-safe counters), the knowledge
epoch.

Labels carry route patterns, service ids, rule ids, artifact ids and feature names only: never an id, value or
code of a patient's record. Under gunicorn every worker writes its samples to PROMETHEUS_MULTIPROC_DIR
(`gunicorn.conf.py` makes one per server) and `/metrics` adds them up, so any worker answers for all.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("lbp_http_requests_total", "HTTP requests by route pattern, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("lbp_http_request_duration_seconds", "HTTP request latency by route pattern and method",
                    ["route", "method"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
HOOK_CALLS = Counter("lbp_cds_hook_calls_total", "CDS Hooks service calls by service and status",
                     ["service", "status"])
CARDS = Counter("lbp_cds_cards_total", "CDS cards issued by service, rule (source.topic) and indicator",
                ["service", "rule", "indicator"])
FEATURE_FAILURES = Counter("lbp_case_feature_failures_total",
                           "Case features whose evaluation raised (fail-safe: shown as incomplete, never dropped)",
                           ["library", "feature"])
NOT_EVALUATED = Counter("lbp_rules_not_evaluated_total", "Rules (actions) that could not be evaluated",
                        ["plan", "action"])
EPOCH = Gauge("lbp_knowledge_epoch", "Knowledge epoch (bumped by every write of a knowledge artifact)",
              multiprocess_mode="max")

_synced: dict[str, dict[tuple[str, str], int]] = {"features": {}, "actions": {}}
_sync_lock = threading.Lock()


def sync_failures() -> None:
    """Carry the reasoning engine's fail-safe counters (per process) into the Prometheus counters."""
    from app.reasoning.failures import FAILURES

    snapshot = FAILURES.snapshot()
    with _sync_lock:
        for kind, counter in (("features", FEATURE_FAILURES), ("actions", NOT_EVALUATED)):
            seen = _synced[kind]
            for key, n in snapshot[kind].items():
                delta = n - seen.get(key, 0)
                if delta > 0:
                    counter.labels(*key).inc(delta)
                seen[key] = n
            # a reset of the engine's counters (tests) starts the deltas again
            for key in [k for k in seen if k not in snapshot[kind]]:
                del seen[key]


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route, method).observe(seconds)


def observe_hook_call(service: str, status: int) -> None:
    HOOK_CALLS.labels(service, str(status)).inc()


def observe_cards(service: str, cards: list[dict[str, Any]] | None) -> None:
    for card in cards or []:
        rule = ((card.get("source") or {}).get("topic") or {}).get("code") or "none"
        CARDS.labels(service, rule, str(card.get("indicator"))).inc()


def exposition(epoch: int | None) -> tuple[bytes, str]:
    """The metrics text: every worker's samples when PROMETHEUS_MULTIPROC_DIR is set, else this process's."""
    sync_failures()
    if epoch is not None:
        EPOCH.set(epoch)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the request's route, method, status, ms."""

    FIELDS = ("route", "method", "status", "ms")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                                 "message": record.getMessage()}
        for name in self.FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)

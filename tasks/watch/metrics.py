"""Prometheus exposition of the watch (prometheus_client, a registry of its own).

Per probe (kind, target, family, address) and vantage: `torrust_watch_probe_up` (1/0),
`torrust_watch_probe_latency_seconds` of the last result and
`torrust_watch_probe_last_success_timestamp_seconds`; per vantage the last round's time
and duration, and failed alert deliveries. An existing Prometheus scrapes it; an
Alertmanager rule on `time() - torrust_watch_last_round_timestamp_seconds` pages when the
watch itself goes silent (docs/guides/watch.md).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

from tasks.errors import ConfigError
from tasks.watch.alerts import Observation

LABELS = ("vantage", "probe", "target", "family", "address")


class WatchMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.up = Gauge("torrust_watch_probe_up", "1 when the probe's last result passed, else 0", LABELS, registry=r)
        self.latency = Gauge(
            "torrust_watch_probe_latency_seconds", "Duration of the probe's last result", LABELS, registry=r
        )
        self.last_success = Gauge(
            "torrust_watch_probe_last_success_timestamp_seconds",
            "Unix time of the probe's last passing result",
            LABELS,
            registry=r,
        )
        self.last_round = Gauge(
            "torrust_watch_last_round_timestamp_seconds", "Unix time the last round started", ("vantage",), registry=r
        )
        self.round_duration = Gauge(
            "torrust_watch_round_duration_seconds", "Wall time of the last round", ("vantage",), registry=r
        )
        self.delivery_failures = Counter(
            "torrust_watch_alert_delivery_failures", "Failed alert deliveries", ("channel",), registry=r
        )
        self._server = None

    def observe(self, observations: list[Observation], t_ms: int, duration_s: float, vantage: str) -> None:
        for o in observations:
            labels = (o.key.vantage, o.key.kind, o.key.target, str(o.key.family), o.key.address)
            self.up.labels(*labels).set(1 if o.ok else 0)
            self.latency.labels(*labels).set(o.latency_ms / 1000)
            if o.ok:
                self.last_success.labels(*labels).set(t_ms / 1000)
        self.last_round.labels(vantage).set(t_ms / 1000)
        self.round_duration.labels(vantage).set(duration_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, bind: str) -> int:
        """Serve /metrics on bind:port (0: a free port); returns the port."""
        try:
            self._server, _thread = start_http_server(port, addr=bind, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {port}: cannot listen on {bind}:{port} ({exc.strerror or exc})",
                hint="choose a free port for the watch's metrics, or stop what uses it",
            ) from None
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

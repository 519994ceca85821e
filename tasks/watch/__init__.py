"""health.watch: watch a deployed tracker from outside, over time (issue #12).

The engine behind `health.watch`, `health.uptime`, `health.report` and the remote
install: probe rounds on a schedule (`loop`), what a round probes (`targets`), a SQLite
history (`store`), uptime and incidents (`uptime`), alerts on state changes with webhook
and SMTP channels (`alerts`), a self-contained HTML status page (`report`), Prometheus
exposition (`metrics`), and a scheduled job on another host (`remote`, `runner`).

The modules use the standard library plus `prometheus_client` (pure Python), so the
same code runs from this checkout and, bundled as a zip application, on a vantage host
that has only Python 3.11+ (docs/adr draft in NOTES-watch.md).
"""

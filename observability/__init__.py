"""Observability of the summarizer: OpenTelemetry traces and metrics over OTLP, alert rules, a dashboard.

    telemetry.py              the facade the service calls (see its docstring for the modules behind it)
    middleware.py             ASGI middleware: request metrics (including 4xx rejected before our code)
    collector.py              a real OTLP collector (rotel) on loopback, forwarding to a receiver in this process
    otlp_received.py          what a collector received, decoded with opentelemetry-proto
    alerts.yml                Prometheus alert rules (checked with promtool in the tests)
    grafana-dashboard.json    Grafana dashboard over the same metrics
"""

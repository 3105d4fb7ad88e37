"""Observability of the summarizer: OpenTelemetry traces and metrics over OTLP, alert rules, a dashboard.

    telemetry.py              setup from the standard OTEL_* variables and the facade the service calls
    middleware.py             ASGI middleware: request metrics (including 4xx rejected before our code)
    collector.py              a real OTLP collector (rotel) on loopback, and a parser for what it received
    alerts.yml                Prometheus alert rules (checked with promtool in the tests)
    grafana-dashboard.json    Grafana dashboard over the same metrics
    bench_cost.py             measures throughput with telemetry on vs off
"""

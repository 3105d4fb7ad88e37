"""What telemetry costs: throughput with OTLP export on vs off, in one run, against a real collector.

    python -m bench.telemetry_cost --tiny                  # tiny BART in a throwaway BentoML home
    python -m bench.telemetry_cost --model dialogue-bart-small:latest --requests 64 --concurrency 8

Starts a collector (observability/collector.py: rotel, dropping what it receives), then serves the same
model alternately without and with telemetry (``--rounds`` of each, interleaved so that drift on a shared
machine hits both), sends the same requests at the same concurrency through the project's client, and
prints throughput and latency per mode. Then it times the telemetry code of one request in-process
(bench/telemetry_inprocess.py), which is the part end-to-end noise hides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.load import run_load  # noqa: E402
from bench.stats import mean, ratio_spread  # noqa: E402

DIALOGUES = [
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
    "Tom: Lunch at noon?\nAnna: OK, see you at the usual place.\nTom: Great, I'll book a table.",
    "Lena: Did the parcel arrive?\nMax: Yes, this morning, thanks a lot!\nLena: Great, enjoy it.",
    "Sam: Are we still on for the meeting at 3?\nKim: Yes, room 4B.\nSam: Perfect, I'll bring the slides.",
]
MODES = ("off", "on")


def telemetry_env(mode: str, otlp_grpc_endpoint: str) -> dict[str, str]:
    """The service's OpenTelemetry settings: export to the collector, or the SDK off (whatever this
    process's environment says)."""
    if mode == "off":
        return {"OTEL_SDK_DISABLED": "true"}
    return {"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}


def one_round(url: str, requests: int, concurrency: int) -> dict:
    """One warm-up request, then ``requests`` at ``concurrency``: throughput, p50, p95, errors."""
    run_load(url, DIALOGUES[:1], 1)
    res = run_load(url, [DIALOGUES[i % len(DIALOGUES)] for i in range(requests)], concurrency)
    latency = res.to_json()["latency"]
    return {"requests": requests, "errors": requests - res.ok, "seconds": round(res.wall_s, 3),
            "throughput_rps": round(res.throughput_rps, 3),
            "p50_s": round(latency["p50_s"], 3) if res.ok else None,
            "p95_s": round(latency["p95_s"], 3) if res.ok else None}


def end_to_end(model: str, env: dict[str, str], otlp_grpc_endpoint: str, args, workdir: Path) -> dict[str, list]:
    """Per mode, one row per round: a fresh service each time, off and on alternating."""
    from bench.servers import START_TIMEOUT_S
    from harness import bentoml_serve

    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode in MODES:
            # the response cache off: the same four dialogues are sent again and again
            serve_env = {**env, "SUMMARIZER_MODEL": model, "SUMMARIZER_CACHE": "off",
                         **telemetry_env(mode, otlp_grpc_endpoint)}
            server = bentoml_serve(workdir / f"serve-{mode}-{round_}.log", serve_env, name=f"service-telemetry-{mode}")
            try:
                server.start(timeout_s=START_TIMEOUT_S)
                row = {"round": round_, **one_round(server.url, args.requests, args.concurrency)}
            finally:
                server.stop()
            results[mode].append(row)
            print(f"  round {round_} telemetry {mode:3}: {row['throughput_rps']:.2f} req/s, "
                  f"p50 {row['p50_s']}s, p95 {row['p95_s']}s, {row['errors']} errors", flush=True)
    return results


def tiny_model(workdir: Path, env: dict[str, str]) -> str:
    """A tiny random BART imported into a throwaway BentoML home (this process's and the servers')."""
    home = workdir / "bentoml_home"
    os.environ["BENTOML_HOME"] = env["BENTOML_HOME"] = str(home)
    from model_store.store import import_model
    from model_store.tiny import build_tiny_bart

    return str(import_model(str(build_tiny_bart(workdir / "tiny-bart")), "tiny-bart").tag)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry_cost", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("SUMMARIZER_MODEL", "dialogue-bart-small:latest"))
    parser.add_argument("--tiny", action="store_true", help="import a tiny random BART into a throwaway BentoML home")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-process-requests", type=int, default=2000,
                        help="requests of the in-process timing of the telemetry code (0 skips it)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from observability.collector import Collector

    workdir = Path(tempfile.mkdtemp(prefix="telemetry-cost-"))
    env: dict[str, str] = {}
    model = tiny_model(workdir, env) if args.tiny else args.model
    print(f"model {model}; {args.requests} requests at concurrency {args.concurrency}, {args.rounds} rounds "
          f"per mode; logs in {workdir}", flush=True)
    with Collector(workdir / "collector.log", record=False) as collector:
        e2e = end_to_end(model, env, collector.endpoint("grpc"), args, workdir)
        micro = None
        if args.in_process_requests:
            from bench.telemetry_inprocess import telemetry_code_cost

            micro = telemetry_code_cost(collector.endpoint("grpc"), args.in_process_requests)
    mean_rps = {mode: mean([r["throughput_rps"] for r in rows]) for mode, rows in e2e.items()}
    ratio = ratio_spread([r["throughput_rps"] for r in e2e["on"]], [r["throughput_rps"] for r in e2e["off"]])
    change = (ratio["median"] - 1.0) * 100.0
    print(f"throughput: telemetry off {mean_rps['off']:.2f} req/s, on {mean_rps['on']:.2f} req/s; on / off per "
          f"round {ratio['median']:.3f} [{ratio['min']:.3f}-{ratio['max']:.3f}] ({change:+.1f} %)")
    if micro:
        print(f"telemetry code per request (in-process, all spans + metrics + export): "
              f"{micro['us_telemetry_per_request']:.0f} µs wall, {micro['cpu_us_telemetry_per_request']:.0f} µs CPU")
    if args.json:
        args.json.write_text(json.dumps({"model": model, "end_to_end": e2e, "mean_throughput_rps": mean_rps,
                                         "throughput_ratio_on_off": ratio, "change_percent": round(change, 2),
                                         "in_process": micro}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

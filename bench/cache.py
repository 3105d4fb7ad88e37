"""The response cache through the real service: a hit's latency beside a miss's, in-process and in Redis.

    python -m bench.cache              400 hits and 24 misses per cache store
    python -m bench.cache --quick      smoke: 50 hits, 6 misses

``bentoml serve`` on the shipped default model with the shipped settings (two API workers), started here
once per cache store: ``memory`` (each API worker's own, the default) and ``redis`` (a redis-server from
Debian's package started here on a free port; left out when it is not installed). One client, one request
at a time over a kept-alive HTTP connection (latency, not throughput), POST /summarize:

- misses: DialogSum test dialogues sent once each (each is generated, then stored);
- hits: a few dialogues sent until every API worker has answered them from the cache, then again and
  again; the answers that say ``"cached": true`` are the hits measured (with the in-process cache a
  repeat may reach the other worker first: such an answer is a miss, counted apart).

Per store: p50/p99 of the client's latency (request sent to answer read) for hits and misses, the
service's own ``duration_ms`` of the hits, and as the floor of this machine and HTTP stack, GET /livez
(BentoML's liveness route: no body, no middleware of ours does any work) the same number of times, sent
alternately with the hits. Target: a hit within 5 ms at p99.
Results: a table on stdout, JSON in bench/results/cache-<time>.json (and cache-latest.json).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from bench.common import (busy_warning, git_revision, load_dialogues, log, machine_info, now_iso,  # noqa: E402
                          publish)
from bench.stats import latency_stats  # noqa: E402

TARGET_HIT_P99_S = 0.005
FULL = {"hits": 400, "misses": 24, "hit_dialogues": 4}
QUICK = {"hits": 50, "misses": 6, "hit_dialogues": 2}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--hits", type=int, help=f"hit requests measured per store (default {FULL['hits']})")
    parser.add_argument("--misses", type=int, help=f"miss requests measured per store (default {FULL['misses']})")
    parser.add_argument("--stores", default="memory,redis", help="cache stores to measure (default memory,redis)")
    parser.add_argument("--model", help="stored model (default: $SUMMARIZER_MODEL or dialogue-bart-small:latest)")
    parser.add_argument("--out", help="results directory (default: bench/results)")
    parser.add_argument("--keep-logs", action="store_true")
    return parser


def measure(url: str, plan: dict, dialogues: list[str]) -> dict:
    """Misses (each dialogue once), then hits (a few dialogues, warmed on every worker, sent again and again)."""
    import httpx

    hit_texts, miss_texts = dialogues[:plan["hit_dialogues"]], dialogues[plan["hit_dialogues"]:]
    latencies: dict[str, list[float]] = {"hit": [], "miss": []}
    service_ms: list[float] = []
    unexpected = {"miss_while_hits": 0, "hit_while_misses": 0, "errors": 0}
    with httpx.Client(base_url=url, timeout=120) as client:
        def post(dialogue: str) -> tuple[dict | None, float]:
            started = time.perf_counter()
            resp = client.post("/summarize", json={"dialogue": dialogue})
            elapsed = time.perf_counter() - started
            if resp.status_code != 200:
                unexpected["errors"] += 1
                return None, elapsed
            return resp.json(), elapsed

        post(miss_texts[0])  # warm-up: the first request of a fresh service pays one-off costs
        for text in miss_texts[1:]:
            answer, elapsed = post(text)
            if answer is not None:
                latencies["hit" if answer["cached"] else "miss"].append(elapsed)
                unexpected["hit_while_misses"] += bool(answer["cached"])
        latencies["hit"].clear()
        for text in hit_texts:  # until two answers in a row are hits: with two workers, both likely hold it
            in_a_row = 0
            for _ in range(40):
                answer, _ = post(text)
                in_a_row = in_a_row + 1 if answer and answer["cached"] else 0
                if in_a_row >= 4:
                    break
        floor: list[float] = []
        for i in range(plan["hits"]):
            started = time.perf_counter()
            client.get("/livez")
            floor.append(time.perf_counter() - started)
            answer, elapsed = post(hit_texts[i % len(hit_texts)])
            if answer is None:
                continue
            if answer["cached"]:
                latencies["hit"].append(elapsed)
                service_ms.append(answer["duration_ms"])
            else:
                unexpected["miss_while_hits"] += 1
    hit, miss = latency_stats(latencies["hit"]), latency_stats(latencies["miss"])
    return {"hit": hit, "miss": miss, "livez": latency_stats(floor),
            "hit_service_ms": latency_stats([ms / 1000 for ms in service_ms]), "unexpected": unexpected,
            "speedup_p50": (miss["p50_s"] / hit["p50_s"]) if hit["p50_s"] and miss["p50_s"] else None,
            "hit_p99_within_target": hit["p99_s"] is not None and hit["p99_s"] <= TARGET_HIT_P99_S}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = {"hits": args.hits or base["hits"], "misses": args.misses or base["misses"],
            "hit_dialogues": base["hit_dialogues"]}
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not set(stores) <= {"memory", "redis"}:
        raise SystemExit(f"--stores takes memory and/or redis, e.g. memory,redis; got {args.stores!r}")
    redis_binary = shutil.which("redis-server")
    if "redis" in stores and redis_binary is None:
        log("redis-server not installed (Debian: apt-get install redis-server): Redis left out")
        stores.remove("redis")
    warning = busy_warning()
    if warning:
        log(f"warning: {warning}")
    load_before = [round(x, 2) for x in os.getloadavg()]
    from bench.servers import START_TIMEOUT_S, summarizer_server
    from serving.config import DEFAULT_MODEL_NAME

    model = args.model or os.environ.get("SUMMARIZER_MODEL") or f"{DEFAULT_MODEL_NAME}:latest"
    # one dialogue for the warm-up, misses, and the hits' dialogues: distinct, so that a miss is a miss
    dialogues = list(dict.fromkeys(load_dialogues(plan["hit_dialogues"] + plan["misses"] + 1 + 16)))
    dialogues = dialogues[:plan["hit_dialogues"] + plan["misses"] + 1]
    logs = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    results: dict[str, dict] = {}
    for store in stores:
        redis = None
        env = {"SUMMARIZER_CACHE": "on"}
        if store == "redis":
            redis = _redis(redis_binary, logs)
            env["SUMMARIZER_CACHE_URL"] = redis.url
        server = summarizer_server(f"cache-{store}", model, logs, **env)
        try:
            log(f"{store}: starting the service ({model}) ...")
            server.start(timeout_s=START_TIMEOUT_S)
            log(f"{store}: measuring {plan['misses']} misses and {plan['hits']} hits ...")
            results[store] = measure(server.url, plan, dialogues)
        finally:
            server.stop()
            if redis is not None:
                redis.stop(grace_s=5)
    report = {"created": now_iso(), "git": git_revision(),
              "command": "python -m bench.cache " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine_info(), "load_average_before": load_before, "busy_warning": warning,
              "model": model, "plan": plan, "target_hit_p99_s": TARGET_HIT_P99_S, "stores": results}
    publish("cache", report, args.out, render(report), logs, args.keep_logs)
    return 0


def _redis(binary: str, logs: Path):
    from harness import ManagedProcess, free_port, ports_listening

    port = free_port()
    redis = ManagedProcess("redis-server", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                            "--appendonly", "no", "--dir", str(logs)], logs / "redis.log",
                           ready=ports_listening(port), port=port).start()
    redis.url = f"redis://127.0.0.1:{port}/0"
    return redis


def render(report: dict) -> str:
    machine = report["machine"]
    ms = lambda s: "-" if s is None else f"{s * 1000:.1f}"  # noqa: E731
    lines = [f"response cache through the service: {report['model']}, one request at a time, "
             f"{machine.get('cpus')} CPUs ({machine.get('processor')}), load average before "
             f"{report['load_average_before']}",
             f"{'store':<7} {'answers':<6} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  notes"]
    for store, r in report["stores"].items():
        for kind in ("miss", "hit", "livez"):
            s = r[kind]
            note = ""
            if kind == "hit":
                note = (f"in the service p50 {ms(r['hit_service_ms']['p50_s'])} ms; p99 "
                        f"{'within' if r['hit_p99_within_target'] else 'OVER'} the "
                        f"{report['target_hit_p99_s'] * 1000:g} ms target; {r['speedup_p50']:.0f}x faster "
                        f"than a miss at p50" if r["speedup_p50"] else "")
            if kind == "livez":
                note = "GET /livez: the floor of this machine and HTTP stack"
            lines.append(f"{store:<7} {kind:<6} {s['n']:>4} {ms(s['p50_s']):>8} {ms(s['p99_s']):>8} "
                         f"{ms(s['max_s']):>8}  {note}")
        odd = {k: v for k, v in r["unexpected"].items() if v}
        if odd:
            lines.append(f"{'':<7} unexpected: {odd}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark's report: a table of the measures against their targets and one of the absolute figures,
made from the results dict alone (so a saved JSON can be rendered again)."""

from __future__ import annotations

from collections.abc import Callable

from bench.common import fmt

Row = tuple[str, str, str, str]


def cell(entry: dict | None, digits: int = 2, unit: str = "x") -> str:
    """``median [min-max]`` of a ``bench.stats.spread`` (just the median for one value), '-' for none."""
    if not entry or entry.get("median") is None:
        return "-"
    if entry.get("n", 0) > 1:
        return f"{entry['median']:.{digits}f}{unit} [{entry['min']:.{digits}f}-{entry['max']:.{digits}f}]"
    return f"{entry['median']:.{digits}f}{unit}"


def met(entry: dict | None) -> str:
    if not entry or entry.get("met") is None:
        return "-"
    return "met" if entry["met"] else "MISSED"


def target(entry: dict | None, unit: str = "x") -> str:
    if not entry or "target" not in entry:
        return "-"
    return ("<= " if entry["kind"] == "max" else ">= ") + f"{entry['target']:g}{unit}"


def judged_row(label: str, entry: dict, digits: int = 2) -> Row:
    return label, cell(entry, digits), target(entry), met(entry)


def overhead_rows(item: dict, results: dict) -> list[Row]:
    return [judged_row("1 serving overhead: p50 service c=1 / direct generate()", item["ratio"], 3)]


def batching_rows(item: dict, results: dict) -> list[Row]:
    out = [judged_row(f"2 adaptive batching: throughput c={item['concurrency']} on / off", item["throughput_ratio"])]
    bound = item.get("engine_batching_bound") or {}
    if bound.get("speedup"):
        out.append((f"2 (ceiling) engine alone: {bound['dialogues']} one by one / one batch",
                    f"{bound['speedup']:.2f}x", "-", "-"))
    return out


def baseline_rows(item: dict, results: dict) -> list[Row]:
    c = item["concurrency"]
    out = [judged_row(f"3 vs FastAPI+pipeline: throughput c={c}, service / baseline", item["throughput_ratio"]),
           judged_row(f"3 vs FastAPI+pipeline: p99 latency c={c}, service / baseline", item["p99_ratio"])]
    if item.get("throughput_ratio_to_sequential_baseline"):
        out.append((f"3 (context) service c={c} / baseline at its best (1 client, "
                    f"{item['baseline_sequential_throughput_rps']['median']:.2f}/s)",
                    cell(item["throughput_ratio_to_sequential_baseline"]), "-", "-"))
    return out


ABLATIONS = (("onnx_no_spin", "ONNX BeamSearch, workers sleeping between operators"),
             ("onnx_generate", "ONNX under transformers' generate() loop"),
             ("onnx_untuned", "ONNX before tuning"))


def engine_rows(item: dict, results: dict) -> list[Row]:
    out = [judged_row("4 ONNX Runtime / PyTorch latency (CPU, batch 1)", item["onnx_latency_ratio"]),
           judged_row("4 int8 ONNX / PyTorch latency", item["int8_latency_ratio"])]
    for name, label in ABLATIONS:
        if name in item["ratio_to_torch"]:
            out.append((f"4 (ablation) {label} / PyTorch", cell(item["ratio_to_torch"][name]), "-", "-"))
    quality = item.get("int8_quality")
    if quality:
        n = sum(v["n"] for v in quality["sets"].values())
        drop = quality["rougeL_drop"]
        value = "-" if drop is None else f"{drop:+.2f} pts (worst set; {n} dialogues)"
        out.append(("4 int8 ROUGE-L drop vs fp32 ONNX (eval suite)", value, target(quality, " pts"), met(quality)))
    return out


def cold_start_rows(item: dict, results: dict) -> list[Row]:
    out = [("5 cold start: bentoml serve -> ready", cell(item["cold_start_s"], 1, " s"), "-", "-")]
    for label, mem in (("idle", item["memory_idle_after_one_request"]), ("after load", item["memory_after_load"])):
        if mem and mem.get("processes"):
            out.append((f"5 memory of all service processes ({label})",
                        f"PSS {mem['pss_mib']:.0f} MiB, RSS {mem['rss_mib']:.0f} MiB ({mem['processes']} proc)",
                        "-", "-"))
    return out


def gpu_rows(item: dict, results: dict) -> list[Row]:
    if "skipped" in item:
        return [("6 GPU summaries/s (bart-large-cnn shape, fp16)", "skipped: no CUDA", ">= 40/s", "-")]
    t = item["target"]
    return [(f"6 GPU summaries/s (best batch {item.get('best_batch_size')})",
             fmt(item.get("best_summaries_per_s"), 1, "/s"), target(t, "/s"), met(t))]


ROWS: dict[str, Callable[[dict, dict], list[Row]]] = {
    "serving_overhead": overhead_rows, "adaptive_batching": batching_rows, "vs_fastapi_pipeline": baseline_rows,
    "onnx_vs_torch": engine_rows, "cold_start": cold_start_rows, "gpu": gpu_rows}


def rows(results: dict) -> list[Row]:
    """The measures against their targets, in the issue's order; a failed item shows its error."""
    out: list[Row] = []
    for name, item_rows in ROWS.items():
        item = results["items"].get(name)
        if item is None:
            continue
        if "error" in item:
            out.append((name, "error: " + item["error"][-110:], "-", "-"))
        else:
            out.extend(item_rows(item, results))
    return out


def system_row(label: str, s: dict) -> Row:
    if s.get("failed_requests"):
        label += f" ({s['failed_requests']}/{s['requests']} FAILED)"
    return label, cell(s["throughput_rps"], 2, "/s"), cell(s["p50_s"], 2, " s"), cell(s["p99_s"], 2, " s")


def detail_rows(results: dict) -> list[Row]:
    """Absolute figures: throughput, p50, p99 of every system measured."""
    items = {name: item for name, item in results["items"].items() if "error" not in item}
    c = results.get("concurrency")
    out: list[Row] = []
    if "serving_overhead" in items:
        o = items["serving_overhead"]
        out.append(("direct generate(), sequential", "-", cell(o["direct_p50_s"], 3, " s"), "-"))
        out.append(("service, concurrency 1", "-", cell(o["service_p50_s"], 3, " s"), "-"))
        if o.get("service_no_batching_p50_s"):
            out.append(("service without batching, concurrency 1", "-", cell(o["service_no_batching_p50_s"], 3, " s"),
                        "-"))
    if "adaptive_batching" in items:
        out.append(system_row(f"service, batching on, c={c}", items["adaptive_batching"]["batching_on"]))
        out.append(system_row(f"service, batching off, c={c}", items["adaptive_batching"]["batching_off"]))
    if "vs_fastapi_pipeline" in items:
        if "adaptive_batching" not in items:
            out.append(system_row(f"service, c={c}", items["vs_fastapi_pipeline"]["service"]))
        out.append(system_row(f"FastAPI + pipeline, c={c}", items["vs_fastapi_pipeline"]["fastapi_pipeline"]))
    if "onnx_vs_torch" in items:
        for name, s in items["onnx_vs_torch"]["latency_s"].items():
            share = items["onnx_vs_torch"]["breakdown"].get(name, {}).get("model_share", 0) * 100
            out.append((f"engine {name}, batch 1 (in the model/runtime {share:.0f}% of time)", "-",
                        cell(s, 3, " s"), "-"))
    return out


def title(results: dict) -> str:
    m = results["machine"]
    return (f"{results['model']['tag']} on {m.get('processor')} ({m.get('cpus')} CPUs"
            f"{', ' + m['gpu'] if m.get('gpu') else ''}), {results['threads']} threads, "
            f"backend {results['backend']}, {results['mode']} run; median [min-max] over rounds")


def render_table(results: dict) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def table_of(heading: str, columns: tuple[str, ...], body: list[Row]) -> Table:
        table = Table(title=escape(heading), title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in body:
            table.add_row(*map(escape, row))
        return table

    buf = StringIO()
    console = Console(file=buf, width=140, force_terminal=False)
    console.print(table_of(title(results), ("measure", "result", "target", ""), rows(results)))
    detail = detail_rows(results)
    if detail:
        console.print(table_of("absolute figures", ("system", "throughput", "p50", "p99"), detail))
    if results.get("busy_warning"):
        console.print(escape(f"warning: {results['busy_warning']}"))
    return buf.getvalue()

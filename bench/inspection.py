"""What the input inspection step (serving/inspection.py) costs per dialogue in the API process, and how often
it calls an English corpus dialogue another language.

    python -m bench.inspection [--data-dir DIR] [--repeat 3]

Per kind of dialogue (SAMSum validation chats, DialogSum test dialogues, 15,000-character meetings of 22
joined DialogSum dialogues, hand-written German/French/Japanese chats): p50 and p99 milliseconds of the whole
step's statistics, of the tokenizer's share (tokens and fragmented words) and of the language identification;
py3langid's load time and memory; the share of English corpus dialogues identified as another language
(a warning a client would wrongly get) and as "und" (too short to tell: no warning).

Results: a table on stdout, JSON in bench/results/inspection-<time>.json (and inspection-latest.json).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

from bench.common import write_results
from eval.datasets import load_eval_set
from serving.inspection import FRAGMENT_PIECES, UNDETERMINED, Inspector, LanguageIdentifier
from serving.tokenization import ModelTokenizer

MODEL_DIR = Path(__file__).resolve().parent.parent / "model_store" / "default_model"
FOREIGN = [
    "Anna: Hallo Tom, hast du heute Abend Zeit? Wir wollten doch ins Kino gehen.\nTom: Ja klar, um acht Uhr?",
    "Marie: Salut Paul, tu viens ce soir au restaurant avec nous ?\nPaul: Oui, bien sûr ! À quelle heure ?",
    "さくら: 明日の会議は何時からですか？\nけんた: 午前十時からです。資料は準備できていますか？",
]


def _ms(fn, items: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        for text in items:
            started = time.perf_counter()
            fn(text)
            times.append((time.perf_counter() - started) * 1000.0)
    return times


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inspection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="corpora (default: $SUMMARIZER_DATA_DIR or ../shared/data)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", help="results directory (default bench/results)")
    args = parser.parse_args(argv)

    samsum = [e.dialogue for e in load_eval_set("samsum_validation", args.data_dir)]
    dialogsum = [e.dialogue for e in load_eval_set("dialogsum_test", args.data_dir)]
    meetings = ["\n".join(dialogsum[i:i + 22]) for i in range(0, 22 * 20, 22)]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    languages = LanguageIdentifier()
    load_s = time.perf_counter() - started
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    tokenizer = ModelTokenizer(MODEL_DIR)
    inspector = Inspector(tokenizer, 1024, languages)

    kinds = {"SAMSum validation": samsum, "DialogSum test": dialogsum, "meetings (22 joined)": meetings,
             "de/fr/ja chats": FOREIGN * 20}
    rows = []
    for kind, texts in kinds.items():
        total = _ms(inspector.statistics, texts, args.repeat)
        tokens = _ms(lambda t: tokenizer.fragmentation(t, FRAGMENT_PIECES), texts, args.repeat)
        language = _ms(languages.identify, texts, args.repeat)
        rows.append({"kind": kind, "dialogues": len(texts), "mean_chars": statistics.mean(len(t) for t in texts),
                     "p50_ms": _p(total, 0.5), "p99_ms": _p(total, 0.99), "tokenizer_p50_ms": _p(tokens, 0.5),
                     "language_p50_ms": _p(language, 0.5)})

    english = samsum + dialogsum
    found = [languages.identify(d)[0] for d in english]
    other = sum(1 for code in found if code not in ("en", UNDETERMINED))
    undetermined = found.count(UNDETERMINED)
    report = {"rows": rows, "language_model_load_s": load_s, "language_model_rss_mb": rss_mb,
              "english_dialogues": len(english), "identified_other": other, "identified_und": undetermined,
              "false_warning_rate": other / len(english)}

    print(f"{'dialogues':<22} {'n':>5} {'chars':>7} {'p50 ms':>7} {'p99 ms':>7} {'tokenizer':>9} {'language':>9}")
    for r in rows:
        print(f"{r['kind']:<22} {r['dialogues']:>5} {r['mean_chars']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
              f"{r['tokenizer_p50_ms']:>9.2f} {r['language_p50_ms']:>9.2f}")
    print(f"\npy3langid: loaded in {load_s:.2f} s, +{rss_mb:.0f} MB resident")
    print(f"English corpus dialogues (SAMSum validation + DialogSum test): {len(english)}; identified as another "
          f"language {other} ({other / len(english):.2%}); undetermined {undetermined} "
          f"({undetermined / len(english):.2%})")
    path = write_results("inspection", report, args.out)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Invented words: the share of summary words that are neither in the dialogue nor in an English word list.

    python -m eval.invented                                  # the baseline's SAMSum validation summaries
    python -m eval.invented --summaries eval/baselines/dialogue-bart-small.full.jsonl --backend onnx

A compact model that mangles a name writes "Maxtonton" for "Maxton": such a word is in neither the dialogue
nor the dictionary. The count is over every summary word (words are runs of letters and apostrophes;
placeholders such as ``#Person1#`` are left out); a word is known when it, or its part before an apostrophe
("Amanda's", "she'll"), appears in the dialogue (any case) or in the word list (Debian's ``wamerican``,
/usr/share/dict/american-english, any case). Issue 15's bar: at most 1.0 % on SAMSum validation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

WORD_LIST = Path("/usr/share/dict/american-english")
_PLACEHOLDER = re.compile(r"#[^#\s]+#")
_WORD = re.compile(r"[A-Za-z']+")


def words(text: str) -> list[str]:
    return [w for w in (m.strip("'") for m in _WORD.findall(_PLACEHOLDER.sub(" ", text))) if w]


def load_word_list(path: str | Path = WORD_LIST) -> frozenset[str]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: install Debian's wamerican (apt-get install wamerican) "
                                "or pass --words with another word list, one word per line")
    return frozenset(line.strip().lower() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())


@dataclass
class InventedWords:
    words: int = 0
    invented: Counter = field(default_factory=Counter)
    summaries_with_invented: int = 0
    summaries: int = 0

    @property
    def share(self) -> float:
        return sum(self.invented.values()) / self.words if self.words else 0.0

    def as_dict(self, examples: int = 20) -> dict:
        return {"summaries": self.summaries, "words": self.words, "invented": sum(self.invented.values()),
                "share_percent": round(100.0 * self.share, 3),
                "summaries_with_invented": self.summaries_with_invented,
                "most_common": self.invented.most_common(examples)}


def count(pairs: Iterable[tuple[str, str]], known: frozenset[str]) -> InventedWords:
    """``pairs`` of (summary, dialogue)."""
    result = InventedWords()
    for summary, dialogue in pairs:
        in_dialogue = {w.lower() for w in words(dialogue)}
        found = [w for w in words(summary) if not _known(w, in_dialogue, known)]
        result.summaries += 1
        result.words += len(words(summary))
        result.invented.update(found)
        result.summaries_with_invented += bool(found)
    return result


def _known(word: str, in_dialogue: set[str], known: frozenset[str]) -> bool:
    for form in (word.lower(), word.lower().split("'")[0]):
        if form and (form in in_dialogue or form in known):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    from eval.baseline import baseline_path, summaries_path
    from eval.datasets import load_eval_set
    from eval.generate import default_model_ref

    parser = argparse.ArgumentParser(prog="python -m eval.invented", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summaries", help="a suite summaries file (JSONL: set, id, summaries per backend); "
                        "default: the default model's full baseline")
    parser.add_argument("--backend", default="onnx", help="whose summaries (default onnx)")
    parser.add_argument("--set", default="samsum_validation", help="evaluation set (default samsum_validation)")
    parser.add_argument("--words", default=str(WORD_LIST), help=f"word list (default {WORD_LIST})")
    parser.add_argument("--data-dir", help="corpora directory (default: $SUMMARIZER_DATA_DIR or ../shared/data)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)

    path = Path(args.summaries) if args.summaries else summaries_path(
        baseline_path(default_model_ref().split(":")[0]), "full")
    dialogues = {e.id: e.dialogue for e in load_eval_set(args.set, args.data_dir)}
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("set") == args.set and args.backend in row.get("summaries", {}):
            pairs.append((row["summaries"][args.backend], dialogues[row["id"]]))
    if not pairs:
        print(f"no {args.backend} summaries of {args.set} in {path}", file=sys.stderr)
        return 2
    result = count(pairs, load_word_list(args.words)).as_dict()
    if args.json:
        print(json.dumps({"summaries_file": str(path), "set": args.set, "backend": args.backend, **result}, indent=1))
    else:
        print(f"{path} ({args.set}, {args.backend}): {result['invented']} of {result['words']} summary words "
              f"invented = {result['share_percent']:.2f} % ({result['summaries_with_invented']} of "
              f"{result['summaries']} summaries); most common: "
              + ", ".join(f"{w} ({n})" for w, n in result["most_common"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The dialogues users first try, summarized by a model: what its model card quotes.

    python -m eval.examples                              # the shipped default model (model_store/default_model)
    python -m eval.examples --model runs/x/best --backend torch

The first ones are issue 15's (the default model v1 wrote "Olivia, Oliver and Oliver are voting for the election
election.", "According to Aunching the final decision.", "Ben, Ben and Anna will meet at 34."); SAMSum
validation dialogues follow. Each summary is printed with the words eval/invented.py counts as invented.
"""

from __future__ import annotations

import argparse

USER_EXAMPLES = [
    "Olivia: Who are you voting for in this election?\nOliver: Liberals as always.\nOlivia: Me too!!\nOliver: Great",
    "A: Hows the product launch going?\nB: Marketing is finalizing the assets.\nA: Great, keep me posted.",
    "Nicki: I'm singing the national anthem at the game on Saturday!\nTom: Wow, congrats!\n"
    "Nicki: I'm so nervous, it's a full stadium.\nTom: You'll be great, you always are.",
    "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)",
    "Ben: When do we meet tomorrow?\nAnna: 3 pm, room 204.\nBen: OK, see you there.",
]
SAMSUM_IDS = ["13829929", "13817023", "13716628"]  # Delilah and Ashley's post; the animal shelter; the calendar


def dialogues(data_dir: str | None = None) -> list[tuple[str, str]]:
    """(name, dialogue) pairs: the user examples, then the SAMSum validation ones."""
    from eval.datasets import load_eval_set

    samsum = {e.id: e.dialogue for e in load_eval_set("samsum_validation", data_dir)}
    return ([(f"user {i + 1}", d) for i, d in enumerate(USER_EXAMPLES)]
            + [(f"samsum_validation {i}", samsum[i]) for i in SAMSUM_IDS])


def main(argv: list[str] | None = None) -> int:
    from eval.invented import count, load_word_list
    from model_store.store import DEFAULT_MODEL_DIR
    from serving.engines import OnnxEngine, TorchEngine

    parser = argparse.ArgumentParser(prog="python -m eval.examples", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="a Hugging Face model directory")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                        help="torch (default; the directory needs no ONNX export) or onnx (its onnx/ subdirectory)")
    parser.add_argument("--data-dir", help="corpora directory (default: $SUMMARIZER_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    engine = TorchEngine(args.model, "examples", threads=2) if args.backend == "torch" else OnnxEngine(args.model)
    pairs = dialogues(args.data_dir)
    known = load_word_list()
    for (name, dialogue), result in zip(pairs, engine.summarize([d for _, d in pairs])):
        invented = sorted(count([(result.summary, dialogue)], known).invented)
        print(f"- {name}: {' / '.join(dialogue.splitlines()[:4])[:160]}\n  -> {result.summary}"
              + (f"   [invented: {', '.join(invented)}]" if invented else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""ROUGE-L regression suite: evaluation corpora, scoring and the gate that guards `bentoml build`."""

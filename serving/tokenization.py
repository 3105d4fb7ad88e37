"""A stored model's tokenizer through the ``tokenizers`` library alone: no transformers, no PyTorch.

``tokenizer.json`` is the file transformers' fast tokenizer wraps; used directly it gives the same ids and
the same text (tests/serving/test_tokenization.py checks every dialogue of the evaluation corpora) once the
three things transformers does around it are done here too:

- a ``tokenizer.json`` may carry the padding and truncation it was saved with (the shipped model's does);
  transformers switches both off unless a call asks for them, and so does this class: the engines cut
  inputs to the model's context themselves (``Engine.encode``);
- the end and padding tokens are named in ``special_tokens_map.json`` / ``tokenizer_config.json``;
- decoding applies transformers' ``clean_up_tokenization`` when ``tokenizer_config.json`` asks for it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

TOKENIZER_FILE = "tokenizer.json"
_LETTER_RUN = re.compile(r"[^\W\d_]+")


class ModelTokenizer:
    """Encode dialogues to ids (with the model's special tokens) and decode generated ids to text."""

    def __init__(self, model_dir: str | os.PathLike) -> None:
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        path = model_dir / TOKENIZER_FILE
        if not path.exists():
            raise FileNotFoundError(f"{model_dir} has no {TOKENIZER_FILE} (a fast tokenizer's file): re-import the "
                                    "model with `python -m model_store import <hf-id-or-directory>`, which saves it")
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        config = _read_json(model_dir / "tokenizer_config.json")
        named = {**config, **_read_json(model_dir / "special_tokens_map.json")}  # the map wins, as in transformers
        model_config = _read_json(model_dir / "config.json")
        self.eos_token_id = self._token_id(named.get("eos_token"), model_config.get("eos_token_id"), "eos_token")
        self.pad_token_id = self._token_id(named.get("pad_token"), model_config.get("pad_token_id"), "pad_token")
        # What decoding skips is what is not counted as a summary token.
        self.special_ids = frozenset(i for i, token in self._tokenizer.get_added_tokens_decoder().items()
                                     if token.special)
        self.clean_up_spaces = bool(config.get("clean_up_tokenization_spaces", False))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def fragmentation(self, text: str, pieces: int) -> tuple[int, int, int]:
        """(tokens of ``text`` with the special ones, as ``encode`` counts them; its words that have a letter;
        those split into ``pieces`` pieces or more). Words are the pre-tokenizer's (BART's byte-level: runs of
        letters, of digits, of punctuation), so a rare, misspelt or foreign word shows as one word in many
        pieces."""
        from collections import Counter

        encoding = self._tokenizer.encode(text, add_special_tokens=True)
        per_word = Counter(encoding.word_ids)
        per_word.pop(None, None)
        lettered = 0
        fragmented = 0
        for word, n in per_word.items():
            if n < pieces:
                continue
            start, end = encoding.word_to_chars(word)
            if any(c.isalpha() for c in text[start:end]):
                fragmented += 1
        # The pre-tokenizer's words with a letter: its letter runs ("I'd" is "I" and "'d").
        lettered = len(_LETTER_RUN.findall(text))
        return len(encoding.ids), max(lettered, fragmented), fragmented

    def decode(self, rows: Sequence[Sequence[int]]) -> list[str]:
        texts = self._tokenizer.decode_batch([list(row) for row in rows], skip_special_tokens=True)
        return [clean_up_tokenization(t) for t in texts] if self.clean_up_spaces else texts

    def _token_id(self, token, fallback: int | None, role: str) -> int:
        content = token.get("content") if isinstance(token, dict) else token
        found = self._tokenizer.token_to_id(content) if content else None
        if found is None:
            found = fallback
        if found is None:
            raise ValueError(f"the tokenizer names no {role} (special_tokens_map.json, tokenizer_config.json) and "
                             f"config.json has no {role}_id; BART's is e.g. \"{role}\": \"</s>\" or \"<pad>\"")
        return int(found)


def clean_up_tokenization(text: str) -> str:
    """transformers' ``PreTrainedTokenizerBase.clean_up_tokenization``: spaces before punctuation and
    English contractions removed (same replacements, same order)."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}

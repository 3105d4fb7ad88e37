"""What a cached answer is filed under: one key per (model, generation settings, dialogue, anything else that
changes the answer).

The model is named by its identity, not by its tag alone: the tag plus the sha256 of every file recorded at
import (model_store/store.py), so a model re-imported under the same tag with new weights never answers from
the entries of the old one. ``ANSWER_SETTINGS`` lists the service settings that change an answer: the long-dialogue
windows (SUMMARIZER_LONG_*; with them the sha256 of the weights that place their cuts); not the backends (they
agree) nor a dialogue's limits (they refuse rather than change). Every key changes with them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from serving.conversation_boundaries import shipped_sha256
from serving.protocol import GenerationSettings

# Bumped when what an entry holds changes shape: old entries are then never read (they age out by their TTL).
FORMAT = 1
KEY_PREFIX = f"summarizer:cache:v{FORMAT}:"
# ServingConfig fields whose value changes the summary of a dialogue: part of every key.
# The long-dialogue settings decide the windows a long dialogue is read in (serving/long_dialogue.py).
ANSWER_SETTINGS: tuple[str, ...] = ("long_dialogues", "long_window_tokens", "long_from_tokens", "long_summary_tokens",
                                    "long_max_rounds")


def model_identity(stored) -> str:
    """The stored model's identity: sha256 of its tag and of the sha256 of each of its files (BentoML model
    metadata ``sha256``, written at import). A model without recorded hashes falls back to its creation time."""
    files = stored.info.metadata.get("sha256") or {}
    facts = {"tag": str(stored.tag), "files": dict(sorted(files.items()))}
    if not files:
        facts["created"] = str(stored.info.creation_time)
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def answer_context(config, names: tuple[str, ...] = ANSWER_SETTINGS) -> dict:
    """The values of the ``ANSWER_SETTINGS`` of a ServingConfig, as JSON-ready values, and the sha256 of the
    conversation-boundary weights that place a long dialogue's cuts (new weights: new windows, new answers)."""
    context = {name: _plain(getattr(config, name)) for name in names}
    if getattr(config, "long_dialogues", False):
        context["long_boundaries"] = shipped_sha256()
    return context


def cache_key(model: str, settings: GenerationSettings, dialogue: str, context: Mapping[str, object] = {}) -> str:
    """The key of one answer: a SHA-256 over the model identity, the resolved generation settings, the other
    settings that change the answer (``context``) and the dialogue text, exactly as sent (whitespace included:
    the tokenizer sees it)."""
    head = json.dumps({"format": FORMAT, "model": model, "settings": settings.model_dump(mode="json"),
                       "context": dict(context)}, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(head.encode())
    digest.update(b"\0")
    digest.update(dialogue.encode("utf-8", "surrogatepass"))
    return KEY_PREFIX + digest.hexdigest()


def _plain(value: object) -> object:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

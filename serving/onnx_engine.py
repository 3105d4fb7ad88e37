"""The ONNX Runtime engine: the whole generation in ONNX Runtime's BeamSearch operator, without PyTorch,
transformers or optimum (the CPU image installs none of them).

The stored model's ``onnx/beam_search.onnx`` (model_store/beam_search.py) holds optimum's encoder and decoder
inside the operator; ``tokenizers`` does the text (serving/tokenization.py). Every generation setting runs there:

- beams: an input of the operator; one beam is greedy search (the operator keeps the single best token each
  step and stops at the end token, as transformers' greedy search does);
- no-repeat n-gram size: an attribute of the graph; a session per size (serving/search_sessions.py);
- lengths: inputs. transformers counts new tokens, the operator the decoder sequence with its start token.
  BART forces its end token at the last step (``forced_eos_token_id``): the operator stops one step earlier
  and the end token is appended (``as_generated``), so both rank beams on the same tokens. The operator
  needs at least two steps of its own (at one it reads past a buffer, ONNX Runtime 1.32: "indices element
  out of data bounds"); a shorter summary is decided without it where nothing is left to choose (forced
  tokens), else by greedy search's first token (``predict``);
- BART's forced first token (``forced_bos_token_id``): the first step's logits are biased so that it scores
  0, as in transformers (``search_sessions.force_first_token``; the operator's ``prefix_vocab_mask`` alone
  leaves its log-probability in every hypothesis, which changes the winner where lengths compete).

Its output is what transformers' ``generate()`` returns (``as_generated``), token for token for BART's
generation settings (tests/serving/test_engines.py: tiny models, every setting family; bench/onnx_parity.py:
the shipped model on the eval subset). Where it differs, on models without BART's forced tokens: with
several beams and no forced end token, a hypothesis cut at max_new_tokens is ranked with its start token
counted in ONNX Runtime, not in transformers; with one token to choose and no forced first token, greedy
search's token is taken (transformers' beam search may weigh an end at step 1 against the forced one).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from model_store.beam_search import GRAPH_FILE, read_info
from model_store.layout import ONNX_SUBDIR
from serving.engine_base import Engine
from serving.observers import EngineObserver
from serving.protocol import EngineName, GenerationSettings
from serving.search_sessions import SearchSessions

# The operator's fewest decoding steps: max_length (start token + steps) must be at least 3.
MIN_OPERATOR_STEPS = 2


def session_options(ort, threads: int, spinning: bool, stop_spinning_after_run: bool = False):
    """ONNX Runtime options of the engine's sessions (also bench.profile's, so it profiles the same)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if spinning and stop_spinning_after_run:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


class OnnxEngine(Engine):
    """ONNX Runtime on CPU: the BeamSearch graph for every setting.

    One run is the whole search: hundreds of small operators per decoding step, each split across the
    thread pool. Waking a sleeping worker for each costs more than the operator (measured: 25 % of a
    summary), so the workers spin-wait during a run (``search_spinning``) and stop as soon as it returns.
    ``max_extra_searches``: sessions kept for n-gram sizes other than the graph's (least recently used
    dropped)."""

    engine = EngineName.ONNX_CPU

    def __init__(self, model_dir: str | os.PathLike, model_tag: str = "local", threads: int = 0,
                 onnx_dir: str | os.PathLike | None = None, search_spinning: bool = True,
                 max_extra_searches: int = 2, observer: EngineObserver | None = None) -> None:
        import onnxruntime as ort

        super().__init__(model_dir, model_tag, observer)
        onnx_path = Path(onnx_dir) if onnx_dir else self.model_dir.parent / ONNX_SUBDIR
        self.search_info = read_info(onnx_path)
        if self.search_info is None:
            raise FileNotFoundError(f"{onnx_path} has no {GRAPH_FILE} (ONNX Runtime's BeamSearch graph, which the "
                                    "ONNX engine runs): re-import the model with `python -m model_store import "
                                    "<hf-id-or-directory>`")
        threads = threads or (os.cpu_count() or 1)
        self.searches = SearchSessions(
            onnx_path / GRAPH_FILE, max_extra=max_extra_searches,
            make_options=lambda: session_options(ort, threads, spinning=search_spinning, stop_spinning_after_run=True),
            forced_first_token=self.search_info["forced_bos_token_id"], vocab_size=self.search_info["vocab_size"])
        self.search = self.searches.main  # the graph's own n-gram size (bench.profile swaps in a profiled one)
        # Each run hands its arena's free chunks back at its end: a batch's activations (the beams' key/value
        # caches: 0.8 GB for 4 long dialogues at bart-large-cnn's size) are not kept for the worker's life.
        # Measured there: 1.82 instead of 2.52 GB after two batches, the same time within noise.
        self.run_options = ort.RunOptions()
        self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._masks_first_token = "prefix_vocab_mask" in {i.name for i in self.search.get_inputs()}

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, settings: GenerationSettings) -> np.ndarray:
        info = self.search_info
        forced_eos = info["forced_eos_token_id"]
        steps = settings.max_new_tokens - (forced_eos is not None)  # the tokens the search chooses
        if steps >= MIN_OPERATOR_STEPS:
            sequences = self._search(input_ids, attention_mask, settings, steps)
        elif steps == 1 and info["forced_bos_token_id"] is None:
            # One token to choose: greedy search's, as a longer greedy search begins with it. transformers'
            # beam search picks it too but where its end token at step 1 and BART's forced end at step 2
            # compete under the length penalty (no forced first token, min_new_tokens 0, several beams).
            greedy = settings.model_copy(update={"num_beams": 1})
            sequences = self._search(input_ids, attention_mask, greedy, MIN_OPERATOR_STEPS)[:, :2]
        else:  # nothing to choose: the start token, and BART's forced first token if one step is left
            forced = [info["decoder_start_token_id"]] + [info["forced_bos_token_id"]] * steps
            sequences = np.tile(np.array(forced, np.int32), (input_ids.shape[0], 1))
        return as_generated(sequences, info["pad_token_id"], info["eos_token_id"], forced_eos)

    def _search(self, input_ids: np.ndarray, attention_mask: np.ndarray, settings: GenerationSettings,
                steps: int) -> np.ndarray:
        """The operator's sequences (batch x (1 + steps)), start token first, finished rows padded."""
        max_length = 1 + steps
        feeds = {"input_ids": input_ids.astype(np.int32),
                 "attention_mask": attention_mask.astype(np.int32),
                 "max_length": np.array([max_length], np.int32),
                 "min_length": np.array([min(settings.min_new_tokens + 1, max_length)], np.int32),
                 "num_beams": np.array([settings.num_beams], np.int32),
                 "num_return_sequences": np.array([1], np.int32),
                 "length_penalty": np.array([settings.length_penalty], np.float32),
                 "repetition_penalty": np.array([1.0], np.float32)}
        if self._masks_first_token:  # transformers forces the first token; the mask does (all ones: no force)
            forced_bos = self.search_info["forced_bos_token_id"]
            shape = (input_ids.shape[0], self.search_info["vocab_size"])
            if forced_bos is None:
                mask = np.ones(shape, np.int32)
            else:
                mask = np.zeros(shape, np.int32)
                mask[:, forced_bos] = 1
            feeds["prefix_vocab_mask"] = mask
        session = (self.search if settings.no_repeat_ngram_size == self.searches.graph_ngram
                   else self.searches.session(settings.no_repeat_ngram_size))
        # only the main session has an arena to shrink (ONNX Runtime refuses the option for one without)
        options = self.run_options if session is self.search and self.searches.main_has_arena else None
        return session.run(None, feeds, options)[0][:, 0, :]


def as_generated(sequences: np.ndarray, pad: int, eos: int, forced_eos: int | None) -> np.ndarray:
    """The operator's sequences as transformers' ``generate()`` returns them (int64).

    The operator writes a finished row without its end token and pads every row to its max_length;
    generate() keeps the end token, ends a row cut at max_new_tokens with the forced end token (when the
    model has one: the operator stopped a step earlier for it), and pads to the longest row."""
    length = sequences.shape[1]
    rows = []
    for row in sequences.tolist():
        end = length
        while end > 1 and row[end - 1] == pad:
            end -= 1
        tokens = row[:end]
        if end < length:
            tokens.append(eos)
        elif forced_eos is not None:
            tokens.append(forced_eos)
        rows.append(tokens)
    width = max(len(tokens) for tokens in rows)
    return np.array([tokens + [pad] * (width - len(tokens)) for tokens in rows], dtype=np.int64)

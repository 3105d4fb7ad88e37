"""ONNX Runtime sessions of a stored BeamSearch graph, one per no-repeat n-gram size, its weights in memory once.

``no_repeat_ngram_size`` is an attribute of ONNX Runtime's BeamSearch operator (model_store/beam_search.py), not
an input: a request for another size needs another session of the same graph with the attribute changed. A
session made from the stored file holds a copy of every weight (measured on the shipped model, 41 MB of weights:
+65 MB PSS per session, first run included). So:

1. at start, one session at ``ORT_ENABLE_ALL`` optimizes the stored graph and writes the result into a private
   temporary directory, every tensor of 1 KB or more in one external data file (the size of the weights), and
   is dropped;
2. every session is made from that optimized graph with graph optimizations off (nothing is left to do):
   ONNX Runtime memory-maps the external file, so all sessions read the same pages;
3. the session of the graph's own n-gram size (the model's default) prepacks its MatMul weights into MLAS's
   layout and keeps ONNX Runtime's memory arena, as the stored file's session did: same tokens, same speed.
   Sessions for other sizes do neither, for settings other than the model's: prepacking copies the weights
   (measured on the shipped model, first run included: +24 MB a session instead of +43 MB, and 1.4x to 1.8x
   the time per summary, one thread: 122 against 66 to 88 ms); an arena keeps its largest batch's
   activations for that session alone (100 dialogues through sizes 2, 0, 5 and 1, two sessions kept: +1,191
   MiB PSS with arenas, +451 MiB without, where freed memory serves the next session; same speed).

At most ``max_extra`` other sizes are kept; the least recently used is dropped (each holds its arena and a
thread pool). The temporary directory (in TMPDIR: it needs the weights' size) lives as long as this object;
BentoML's workers exit without running finalizers, so each start also removes the directories of processes
that no longer run (the directory's name carries its process id).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

DIRECTORY_PREFIX = "summarizer-beam-search-"
OPTIMIZED_FILE = "beam_search.optimized.onnx"
WEIGHTS_FILE = "beam_search.weights"  # the optimized graph's external data, shared by every session
NGRAM_ATTRIBUTE = "no_repeat_ngram_size"
PROVIDERS = ["CPUExecutionProvider"]


class SearchSessions:
    """``session(n)``: a session of the BeamSearch graph with no-repeat n-gram size ``n``."""

    def __init__(self, graph_path: str | Path, make_options: Callable[[], object], max_extra: int = 2,
                 forced_first_token: int | None = None, vocab_size: int = 0) -> None:
        import onnx
        import onnxruntime as ort

        self._ort = ort
        self._make_options = make_options
        self.max_extra = max_extra
        remove_orphaned_directories()
        self._dir = tempfile.TemporaryDirectory(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-")
        optimized = Path(self._dir.name) / OPTIMIZED_FILE
        options = make_options()
        options.optimized_model_filepath = str(optimized)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", WEIGHTS_FILE)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        options.log_severity_level = 3  # its warning: an ENABLE_ALL graph is for this machine only (it is)
        ort.InferenceSession(str(graph_path), options, providers=PROVIDERS)
        self._skeleton = onnx.load(str(optimized), load_external_data=False)  # the graph; weights stay on disk
        if forced_first_token is not None:
            force_first_token(self._skeleton, forced_first_token, vocab_size)
        self.graph_ngram = _ngram_attribute(_search_node(self._skeleton)).i
        self.main = self._session(self.graph_file(self.graph_ngram), lean=False)
        self._extra: OrderedDict[int, object] = OrderedDict()
        self._lock = threading.Lock()

    def session(self, ngram: int):
        if ngram == self.graph_ngram:
            return self.main
        with self._lock:
            found = self._extra.pop(ngram, None)
            session = found if found is not None else self._variant(ngram)
            self._extra[ngram] = session
            while len(self._extra) > self.max_extra:
                self._extra.popitem(last=False)
            return session

    @property
    def extra_sizes(self) -> list[int]:
        """The other n-gram sizes with a session now, least recently used first."""
        return list(self._extra)

    def _variant(self, ngram: int):
        return self._session(self.graph_file(ngram), lean=True)

    def graph_file(self, ngram: int) -> Path:
        """The optimized graph with n-gram size ``ngram``, next to the shared weights file."""
        import onnx

        path = Path(self._dir.name) / f"beam_search.ngram{ngram}.onnx"
        if not path.exists():
            model = onnx.ModelProto()
            model.CopyFrom(self._skeleton)
            _ngram_attribute(_search_node(model)).i = ngram
            onnx.save(model, str(path))
        return path

    def _session(self, path: Path, lean: bool):
        """A session of ``path``; ``lean``: without prepacked weights or an arena (sizes other than the graph's)."""
        options = self._make_options()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if lean:
            options.add_session_config_entry("session.disable_prepacking", "1")
            options.enable_cpu_mem_arena = False
        return self._ort.InferenceSession(str(path), options, providers=PROVIDERS)


def remove_orphaned_directories(parent: str | None = None) -> list[Path]:
    """Remove the temporary directories that processes which no longer run left behind; returns them."""
    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(f"{DIRECTORY_PREFIX}*"):
        match = re.match(rf"{DIRECTORY_PREFIX}(\d+)-", path.name)
        if match and path.is_dir() and not _running(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def force_first_token(model, token: int, vocab_size: int) -> None:
    """Make the first decoding step choose ``token`` with log-probability 0, as transformers'
    ``ForcedBOSTokenLogitsProcessor`` does (BART's ``forced_bos_token_id``).

    The operator's ``prefix_vocab_mask`` only masks the other tokens: the forced token keeps the model's own
    log-probability, which every hypothesis then carries. Where hypotheses of different lengths compete
    (length penalty, early stopping) that constant changes their ranking: on a tiny BART that ends early,
    another summary than transformers'. So the first step's logits (the operator's ``encoder`` subgraph:
    encoder and first decoder step) get a bias of -inf on every other token; log-softmax then gives the
    forced token exactly 0."""
    from onnx import TensorProto, helper

    first_step = next(a.g for a in _search_node(model).attribute if a.name == "encoder")
    producer = next(node for node in first_step.node if "logits" in node.output)
    producer.output[list(producer.output).index("logits")] = "logits_before_forcing"
    bias = [float("-inf")] * vocab_size
    bias[token] = 0.0
    first_step.initializer.append(helper.make_tensor("forced_first_token_bias", TensorProto.FLOAT, [vocab_size], bias))
    first_step.node.append(helper.make_node("Add", ["logits_before_forcing", "forced_first_token_bias"], ["logits"],
                                            name="force first token"))


def _search_node(model):
    for node in model.graph.node:
        if node.op_type == "BeamSearch":
            return node
    raise ValueError("the graph has no BeamSearch node; rebuild it with `python -m model_store import`")


def _ngram_attribute(node):
    for attribute in node.attribute:
        if attribute.name == NGRAM_ATTRIBUTE:
            return attribute
    from onnx import helper

    node.attribute.append(helper.make_attribute(NGRAM_ATTRIBUTE, 0))  # the operator's default when absent
    return node.attribute[-1]

"""ONNX Runtime sessions of a stored BeamSearch graph, one per no-repeat n-gram size, its weights in memory once.

``no_repeat_ngram_size`` is an attribute of ONNX Runtime's BeamSearch operator (model_store/beam_search.py), not
an input: a request for another size needs another session of the same graph with the attribute changed.

The stored graph keeps every weight in one external data file (``beam_search.weights``), which ONNX Runtime
maps into memory rather than reading: every session is made from the graph's structure (a few hundred KB,
changed here: n-gram size, forced first token) with ``session.model_external_initializers_file_folder_path``
pointing at the stored directory, so all sessions read the same file pages and nothing is copied or written
to disk (an earlier version wrote an optimized copy of the weights to TMPDIR at each start).

- The session of the graph's own n-gram size (the model's default) prepacks its MatMul weights into MLAS's
  layout and keeps ONNX Runtime's memory arena: the fastest (without prepacking a bart-large-cnn-sized model
  takes 1.65x the time per summary), at the price of a private copy of the matrices; the file pages that
  prepacking read are then handed back to the kernel (``release_file_pages``). ``prepack=False`` makes it
  lean too.
- Sessions for other sizes do neither: prepacking copies the weights (on the shipped model +24 MB a session
  without it, +43 MB with it; 1.4x to 1.8x the time per summary, one thread); an arena keeps its largest
  batch's activations for that session alone (100 dialogues through sizes 2, 0, 5 and 1, two sessions kept:
  +1,191 MiB PSS with arenas, +451 MiB without, where freed memory serves the next session; same speed).

At most ``max_extra`` other sizes are kept; the least recently used is dropped (each holds a thread pool).
Models stored before the weights file existed keep their weights inside the graph: they still work, but each
session then holds its own copy (``python -m model_store import`` again to share them).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from model_store.beam_search import WEIGHTS_FILE

NGRAM_ATTRIBUTE = "no_repeat_ngram_size"
PROVIDERS = ["CPUExecutionProvider"]
EXTERNAL_FOLDER = "session.model_external_initializers_file_folder_path"


class SearchSessions:
    """``session(n)``: a session of the BeamSearch graph with no-repeat n-gram size ``n``."""

    def __init__(self, graph_path: str | Path, make_options: Callable[[], object], max_extra: int = 2,
                 forced_first_token: int | None = None, vocab_size: int = 0, prepack: bool = True) -> None:
        import onnx
        import onnxruntime as ort

        self._ort = ort
        self._make_options = make_options
        self.max_extra = max_extra
        self._folder = Path(graph_path).resolve().parent
        self._skeleton = onnx.load(str(graph_path), load_external_data=False)  # the graph; weights stay on disk
        if forced_first_token is not None:
            force_first_token(self._skeleton, forced_first_token, vocab_size)
        self.graph_ngram = _ngram_attribute(_search_node(self._skeleton)).i
        self.main = self._session(self.graph_ngram, lean=not prepack)
        self.main_has_arena = prepack
        if prepack:
            release_file_pages(self._folder / WEIGHTS_FILE)
        self._extra: OrderedDict[int, object] = OrderedDict()
        self._lock = threading.Lock()

    def session(self, ngram: int):
        if ngram == self.graph_ngram:
            return self.main
        with self._lock:
            found = self._extra.pop(ngram, None)
            session = found if found is not None else self._session(ngram, lean=True)
            self._extra[ngram] = session
            while len(self._extra) > self.max_extra:
                self._extra.popitem(last=False)
            return session

    @property
    def extra_sizes(self) -> list[int]:
        """The other n-gram sizes with a session now, least recently used first."""
        return list(self._extra)

    def graph_bytes(self, ngram: int) -> bytes:
        """The graph with n-gram size ``ngram``, serialized (its weights stay in the stored file)."""
        import onnx

        model = onnx.ModelProto()
        model.CopyFrom(self._skeleton)
        _ngram_attribute(_search_node(model)).i = ngram
        return model.SerializeToString()

    def open(self, ngram: int, options):
        """A new session of the graph with n-gram size ``ngram`` and ``options`` (bench.profile's, profiled)."""
        options.add_session_config_entry(EXTERNAL_FOLDER, str(self._folder))
        return self._ort.InferenceSession(self.graph_bytes(ngram), options, providers=PROVIDERS)

    def _session(self, ngram: int, lean: bool):
        """A session of the graph with n-gram size ``ngram``; ``lean``: without prepacked weights or an arena."""
        options = self._make_options()
        if lean:
            options.add_session_config_entry("session.disable_prepacking", "1")
            options.enable_cpu_mem_arena = False
        return self.open(ngram, options)


def release_file_pages(path: Path) -> int:
    """Ask Linux to reclaim the resident pages of this process's mappings of ``path``; returns the bytes asked.

    Prepacking reads every matrix from the mapped weights file and keeps its own copy; ONNX Runtime keeps the
    mapping, so the pages read stay resident (0.9 GB at bart-large-cnn's size, counted in the worker's memory)
    for nothing. ``MADV_PAGEOUT`` reclaims clean file pages (they are not written: the mapping is private and
    read-only in use) and keeps the mapping valid: a page read again (the embedding table, the biases) comes
    back from the file. A hint only: where it is unknown (Linux < 5.4, other systems) nothing happens."""
    import ctypes

    madv_pageout, asked = 21, 0
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    target = str(path.resolve())
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if libc.madvise(start, end - start, madv_pageout) != 0:
                return asked  # EINVAL: this kernel does not know the advice
            asked += end - start
    return asked


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

"""What an ONNX file holds, looked at across its subgraphs: which weight products are still fp32.

ONNX Runtime's BeamSearch graph keeps the encoder and decoder as subgraphs in node attributes, and optimum's
merged decoder keeps its layers in If branches; a subgraph reads the weights its outer graph holds. So a
check of "is every weight product int8" has to walk every graph with the constants it can see.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def walk_graphs(model) -> Iterator[tuple[object, frozenset[str]]]:
    """Every graph of ``model`` (the main graph and, recursively, the subgraphs in node attributes), each with
    the names of the constants it can read: its own initializers and its outer scopes'."""
    import onnx

    def walk(graph, outer: frozenset[str]):
        constants = outer | {i.name for i in graph.initializer}
        yield graph, constants
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from walk(attr.g, constants)

    yield from walk(model.graph, frozenset())


def fp32_weight_matmuls(model_or_path) -> list[str]:
    """Names of the MatMul nodes (and FusedMatMul: the tied output projection, model_store/beam_search.py), in
    every graph and subgraph, whose weight (second input) is a constant: the products that dynamic int8
    quantization replaces (by MatMulInteger / DynamicQuantizeMatMul).
    An fp32 export has one per linear layer; an int8 one has none but those kept in fp32 on purpose."""
    model = _load(model_or_path)
    return [node.name for graph, constants in walk_graphs(model) for node in graph.node
            if node.op_type in ("MatMul", "FusedMatMul") and len(node.input) > 1 and node.input[1] in constants]


def _load(model_or_path):
    if not isinstance(model_or_path, (str, Path)):
        return model_or_path
    import onnx

    # the graph structure is enough: initializer names are there even when the values are stored outside
    return onnx.load(str(model_or_path), load_external_data=False)

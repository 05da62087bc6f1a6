"""Ship the student alone: an ONNX file that ONNX Runtime (or any ONNX consumer) runs without dlkdd's model code.

The graph is the bare backbone: it takes the normalised clip (``dlkdd.infer.runner.INPUT_CONTRACT``) with a dynamic
batch axis and returns logits; the class list, input geometry and the mean/std the checkpoint was trained with
travel in the file's ``metadata_props`` (``dlkdd.*`` keys), which :class:`dlkdd.infer.runner.OnnxRunner` reads.
Exported with the torch.export-based exporter (``torch.onnx.export(..., dynamo=True)``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from dlkdd.atomic import atomic_path
from dlkdd.infer.runner import INPUT_NAME, OUTPUT_NAME, ModelInfo, OnnxRunner, TorchRunner

FORMATS = ("onnx",)
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"  # node metadata of torch.onnx's exporter
TOLERANCE = 1e-4  # max |ONNX Runtime − PyTorch| on the export's self-check, in probability


def export_onnx(model_path: str | Path, out: str | Path, seed: int = 0) -> ModelInfo:
    """Export the checkpoint at ``model_path`` to ONNX at ``out`` (temp file + rename) and return its metadata.

    Before the rename the written file is loaded back by ONNX Runtime and compared with PyTorch on random uint8 clips
    at batch 1 and 3 (the batch axis is dynamic): ValueError if any probability differs by more than TOLERANCE.
    """
    import onnx

    torch_runner = TorchRunner(Path(model_path))  # FileNotFoundError / ValueError with one line
    info = torch_runner.info
    backbone = torch_runner.model.backbone.eval()
    # batch 2 in the example: torch.export specialises sizes 0 and 1, which would pin the batch axis
    example = torch.zeros(2, 3, info.num_frames, info.size, info.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation/opset chatter is not the user's concern
        program = torch.onnx.export(backbone, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    verbose=False)
    proto = program.model_proto
    _drop_stack_traces(proto.graph)
    proto.doc_string = f"dlkdd {info.arch} student: {len(info.classes)} classes"
    onnx.helper.set_model_props(proto, info.to_metadata())
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
        check_export(torch_runner, OnnxRunner(tmp), seed)
    return info


def _drop_stack_traces(graph) -> None:
    """Remove the Python stack trace the exporter records on every node: it holds absolute paths of the machine that
    exported (a shipped file should not), and it made the same checkpoint export to other bytes in another checkout."""
    for node in graph.node:
        keep = [p for p in node.metadata_props if p.key != STACK_TRACE_KEY]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
        for attr in node.attribute:  # control-flow subgraphs (none in our models, but cheap to cover)
            for sub in [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs:
                _drop_stack_traces(sub)


def check_export(reference: TorchRunner, exported: OnnxRunner, seed: int = 0) -> float:
    """Max |probability difference| of the two runners on random uint8 clips (batch 1 and 3); ValueError if large."""
    rng = np.random.default_rng(seed)
    shape = (reference.num_frames, reference.size, reference.size, 3)
    worst = 0.0
    for batch in (1, 3):
        clips = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
        worst = max(worst, float(np.abs(reference(clips) - exported(clips)).max()))
    if worst > TOLERANCE:
        raise ValueError(f"the ONNX export disagrees with PyTorch by {worst:.2g} (> {TOLERANCE}); not written")
    return worst

"""int8 dynamic quantization of an exported ONNX LSTM (onnxruntime's ``quantize_dynamic``): the transform only."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from deploy_lstm.errors import ExportError
from deploy_lstm.exporters.common import export_errors, quiet_exporter
from deploy_lstm.exporters.onnx import fold_constants
from deploy_lstm.formats.files import atomic_path
from deploy_lstm.formats.metadata import INT8_DYNAMIC, ArtifactMetadata

__all__ = ["quantize_int8", "QUANTIZED_LSTM"]


QUANTIZED_LSTM = "DynamicQuantizeLSTM"  # com.microsoft op type onnxruntime writes


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Quantize the weights of ``src`` to int8 (dynamic quantization) and write ``dst`` atomically.

    The ``metadata_props`` of ``src`` (configuration, I/O contract) are carried over, so
    :class:`deploy_lstm.OnnxLSTM` runs the result like the float model.

    Args:
        src: an ONNX export (from either exporter).
        dst: the ``.onnx`` file to write.

    Returns:
        ``dst`` as a ``Path``.

    Raises:
        ExportError: ``src`` is not a readable ONNX file, ``dst`` cannot be written, or
            quantization fails.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ExportError(f"no ONNX model at {src}")
    with atomic_path(dst) as tmp, export_errors(f"int8 quantization of {src}"), quiet_exporter():
        proto = onnx.load(str(src))
        fold_constants(proto)
        folded = tmp.parent / "folded.onnx"
        onnx.save_model(proto, str(folded))
        # EnableSubgraph: also quantize the recurrent MatMuls inside Scan/Loop bodies (the
        # projection path); measured L1 uni P128 N=32 T=128: 1.65x faster than float32
        # with it, 1.19x without (only the hoisted input projection), max abs error 3.2e-3.
        quantize_dynamic(
            str(folded), str(tmp), weight_type=QuantType.QInt8, extra_options={"EnableSubgraph": True}
        )
        q = onnx.load(str(tmp))
        carried = {p.key: p.value for p in proto.metadata_props}
        metadata = dataclasses.replace(ArtifactMetadata.from_strings(carried, str(src)), quantized=INT8_DYNAMIC)
        # keys the codec does not know (another tool's) are carried over as they were
        merged = {**carried, **{p.key: p.value for p in q.metadata_props}, **metadata.to_strings()}
        del q.metadata_props[:]
        for key, value in merged.items():
            q.metadata_props.add(key=key, value=value)
        onnx.save_model(q, str(tmp))
    return dst

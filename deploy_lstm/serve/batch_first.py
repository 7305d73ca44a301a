"""The batch-first graphs of a Triton repository: a model with every tensor's batch axis first.

Triton puts the batch dimension first on every tensor of a model with
``max_batch_size > 0`` (state included).  :class:`BatchFirst` wraps the folder's eager
model so that every flat input and output is batch-first (each tensor's batch axis,
:func:`~deploy_lstm.formats.contract.batch_axis`, moved to 0) for the export;
:func:`add_unused_inputs` declares the control inputs a stream graph does not read.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, List, Mapping, Sequence, Tuple

import onnx
import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn

from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec, TensorSpec
from deploy_lstm.formats.metadata import ArtifactMetadata

__all__ = ["BatchFirst", "batch_of", "batch_first", "example", "add_unused_inputs"]


def batch_of(spec: TensorSpec) -> int:
    """The batch axis of ``spec`` (every tensor of a Triton model has one)."""
    axis = contract.batch_axis(spec)
    assert axis is not None, f"{spec.name} has no batch axis"  # checked before any graph is built
    return axis


def batch_first(spec: TensorSpec) -> TensorSpec:
    """``spec`` with its batch axis moved to 0."""
    axis = batch_of(spec)
    shape = list(spec.shape)
    return TensorSpec(spec.name, tuple([shape.pop(axis)] + shape), spec.dtype)


class BatchFirst(nn.Module):
    """The model with every flat tensor batch-first: ``forward(flat) -> tuple of outputs``.

    ``zeros`` are inputs not taken from the caller but filled with zeros (a bare LSTM's
    h0/c0 in the dynamic model).  ``reset`` are inputs multiplied by ``1 - START`` (the
    state of a stream model: a sequence's first request starts from zeros whatever comes
    in); START is then the last flat input, shape (N, 1).

    Args:
        module: the eager model, called as ``module(*args, **kwargs)``.
        tree: the pytree structure of its flat inputs, ``(args, kwargs)``.
        io: its flat inputs and outputs in its own layout.
    """

    def __init__(self, module: nn.Module, tree: Any, io: IOSpec, zeros: Sequence[str] = (), reset: Sequence[str] = ()) -> None:
        super().__init__()
        self.model = module
        self.tree = tree
        self.specs = io.inputs
        self.in_axes = [batch_of(s) for s in io.inputs]
        self.out_axes = [batch_of(s) for s in io.outputs]
        self.zeros = set(zeros)
        self.reset = set(reset)

    def forward(self, flat: List[Tensor]) -> Tuple[Tensor, ...]:
        given = iter(flat)
        first = flat[0]  # (N, ...): batch size of the zeros
        start = flat[-1] if self.reset else None  # (N, 1)
        moved = []
        for spec, axis in zip(self.specs, self.in_axes):
            if spec.name in self.zeros:
                shape = [first.size(0) if i == axis else int(d) for i, d in enumerate(spec.shape)]
                moved.append(torch.zeros(shape, dtype=first.dtype, device=first.device))
                continue
            t = next(given)  # batch-first
            if start is not None and spec.name in self.reset:
                keep = start.to(t.dtype).neg().add(1).reshape([-1] + [1] * (t.dim() - 1))  # (N, 1, ...): 0 at START
                t = t * keep
            moved.append(torch.movedim(t, 0, axis))  # the model's own layout
        args, kwargs = pytree.tree_unflatten(moved, self.tree)
        out = pytree.tree_flatten(self.model(*args, **kwargs))[0]
        return tuple(torch.movedim(t, axis, 0) for t, axis in zip(out, self.out_axes))


def example(spec: TensorSpec, like: Tensor, gen: torch.Generator) -> Tensor:
    """A batch-first example for the export of ``spec``: batch 3, sequence 7 (odd sizes no
    feature size equals); integers stay within the range of ``like``, the model's own example."""
    shape = [d if isinstance(d, int) else (3 if contract.BATCH in d else 7) for d in spec.shape]
    if like.dtype.is_floating_point:
        return torch.randn(shape, generator=gen, dtype=like.dtype)
    if like.dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    return torch.randint(int(like.min()), int(like.max()) + 1, shape, generator=gen, dtype=like.dtype)


def add_unused_inputs(path: Path, inputs: Mapping[str, int]) -> None:
    """Declare {name: ONNX element type} graph inputs of shape (batch, 1) the graph does not read,
    in the graph and in its I/O contract.

    Triton's onnxruntime backend refuses a config whose control inputs the model lacks.
    """
    proto = onnx.load(str(path))
    have = {i.name for i in proto.graph.input}
    meta = ArtifactMetadata.from_strings({p.key: p.value for p in proto.metadata_props}, source=str(path))
    assert meta.io is not None, f"{path} has no I/O contract"  # every deploy_lstm export carries one
    added = []
    for name, elem in inputs.items():
        if name not in have:
            proto.graph.input.append(onnx.helper.make_tensor_value_info(name, elem, [contract.BATCH, 1]))
            added.append(TensorSpec(name, (contract.BATCH, 1), onnx.helper.tensor_dtype_to_np_dtype(elem).name))
    strings = dataclasses.replace(meta, io=IOSpec(meta.io.inputs + tuple(added), meta.io.outputs)).to_strings()
    others = [(p.key, p.value) for p in proto.metadata_props if p.key not in strings]  # keys the codec does not know
    del proto.metadata_props[:]
    for key, value in [*others, *strings.items()]:
        proto.metadata_props.add(key=key, value=value)
    onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)

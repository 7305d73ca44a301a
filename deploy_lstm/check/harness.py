"""The one check harness: inputs at other shapes, the reference models, and the comparison.

Everything that proves an artifact right (validation, the Triton repository writer, the
benchmark's accuracy columns) works on *feeds*: named numpy arrays, one per flat graph
input of the I/O contract, in and out.  This module makes them
(:func:`random_inputs`), runs the references on them (:func:`reference_models`,
:func:`module_fn`) and the artifacts (:func:`runner_fn`, over the runtime's runners),
and measures the difference (:func:`max_abs_rel`, :func:`max_diffs`).  The tolerances
are in :mod:`deploy_lstm.check.tolerance`.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import nn

from deploy_lstm.errors import ConfigError
from deploy_lstm.exporters.signature import Signature
from deploy_lstm.formats import contract
from deploy_lstm.formats.contract import IOSpec
from deploy_lstm.nn.graph import BareLSTM
from deploy_lstm.nn import LSTM, LSTMCell
from deploy_lstm.nn.swap import restore_lstms
from deploy_lstm.runtime.base import Runner
from deploy_lstm.runtime.feeds import full_lengths

__all__ = [
    "EAGER",
    "TORCH",
    "Feeds",
    "Outputs",
    "FeedsFn",
    "LENGTHS_MODES",
    "size_at",
    "random_inputs",
    "example_arrays",
    "module_fn",
    "runner_fn",
    "cell_variants",
    "reference_models",
    "max_abs_rel",
    "max_diffs",
    "exceeding",
]

#: the reference names, as reports and benchmarks print them
EAGER = "deploy_lstm eager"
TORCH = "torch.nn.LSTM"

Feeds = Dict[str, np.ndarray]  # {flat graph input name: array}
Outputs = Dict[str, np.ndarray]  # {flat graph output name: array}
FeedsFn = Callable[[Feeds], Outputs]  # a model or an artifact, called on feeds

#: what :func:`random_inputs` does with an input named ``lengths``
LENGTHS_MODES = ("random", "full", "omit")


# --- inputs at other shapes ----------------------------------------------------------------


def size_at(dim: object, batch: int, sequence: int) -> int:
    """The size of one axis at (batch, sequence): static sizes stay; a dynamic axis whose
    name contains "batch" is ``batch``, every other dynamic axis ``sequence``."""
    if isinstance(dim, int):
        return dim
    return batch if contract.BATCH in str(dim) else sequence


def random_inputs(
    io: IOSpec,
    batch: int,
    sequence: int,
    rng: np.random.Generator,
    *,
    examples: Optional[Mapping[str, Any]] = None,
    lengths: str = "random",
) -> Feeds:
    """Random feeds for every input of ``io`` at ``batch`` and ``sequence`` (see :func:`size_at`).

    Args:
        io: the graph's I/O contract.
        rng: the generator; the same seed gives the same feeds.
        examples: {input name: example array or tensor}: an integer input stays within its
            example's range (token ids remain valid); without an example it is 0.
        lengths: an input named ``lengths``: ``"random"`` (1..sequence, the first sequence
            full, the last of length 1 when there are two or more), ``"full"`` (every
            sequence ``sequence`` long) or ``"omit"`` (left out).

    Returns:
        {input name: array}: floats standard normal, booleans random.

    Raises:
        ConfigError: an unknown ``lengths`` mode.
    """
    if lengths not in LENGTHS_MODES:
        raise ConfigError(f"expected lengths in {LENGTHS_MODES}, got {lengths!r}")
    feeds: Feeds = {}
    for spec in io.inputs:
        shape = tuple(size_at(d, batch, sequence) for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if spec.name == contract.LENGTHS:
            if lengths == "omit":
                continue
            if lengths == "full":
                feeds[spec.name] = np.full(shape, sequence, dtype=dtype)
                continue
            L = rng.integers(1, sequence + 1, size=shape).astype(dtype)
            L[0] = sequence  # the full length is always covered; 1 whenever sequence > 1 and batch > 1
            if L.size > 1:
                L[-1] = 1
            feeds[spec.name] = L
        elif np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif examples is not None and spec.name in examples:
            ex = examples[spec.name]
            feeds[spec.name] = rng.integers(int(ex.min()), int(ex.max()) + 1, size=shape).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
    return feeds


def example_arrays(sig: Signature) -> Dict[str, Any]:
    """{flat input name: example tensor} of a signature (the ``examples`` of :func:`random_inputs`)."""
    return dict(zip(sig.input_names, pytree.tree_flatten((sig.args, sig.kwargs))[0]))


# --- references and artifacts, called on feeds --------------------------------------------------


def module_fn(module: Any, sig: Signature) -> FeedsFn:
    """Call a torch module as the graph: flat named feeds rebuilt into the signature's structure.

    A bare LSTM's module (a :class:`~deploy_lstm.nn.graph.BareLSTM`) is called with the
    feeds it got, in contract order (``lengths`` only when fed); a whole model with its
    inputs rebuilt by :meth:`Signature.call`.  No gradients; outputs by flat name.
    """

    def run(feeds: Feeds) -> Outputs:
        flat = [torch.from_numpy(feeds[n]) for n in sig.input_names if n in feeds]
        with torch.no_grad(), warnings.catch_warnings():
            # torch notes that oneDNN lacks projections and falls back: not our concern here
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
            out = module(*flat) if sig.bare is not None else sig.call(module, flat)
        return {n: t.detach().numpy() for n, t in zip(sig.output_names, pytree.tree_flatten(out)[0])}

    return run


def runner_fn(runner: Runner) -> FeedsFn:
    """Run an artifact's runner on the feeds it takes.

    Feeds it has no input for are left out; a bare LSTM runner with a ``lengths`` input
    fed none gets full lengths (a case without ``lengths`` means every sequence is whole).
    """

    def run(feeds: Feeds) -> Outputs:
        fed = {n: feeds[n] for n in runner.input_names if n in feeds}
        if runner.config is not None and runner.has_lengths and contract.LENGTHS not in fed:
            fed[contract.LENGTHS] = full_lengths(runner.config, feeds[contract.INPUT])
        return runner.run(fed)

    return run


def cell_variants(model: nn.Module) -> List[str]:
    """The cell variants (``cell`` other than "lstm") of every LSTM and LSTMCell in ``model``."""
    return sorted({m.cell for m in model.modules() if isinstance(m, (LSTM, LSTMCell)) and m.cell != "lstm"})


def reference_models(sig: Signature) -> Dict[str, nn.Module]:
    """The references an artifact of ``sig.model`` is compared with, by name, graph-shaped.

    :data:`EAGER`: the ``deploy_lstm`` model itself; :data:`TORCH`: the same model holding
    ``torch.nn.LSTM`` modules with the same weights (a bare LSTM's ``lengths`` through a
    packed batch).  torch.nn has no variant cells: such a model has the eager reference only.
    ``sig.model`` is not changed (the torch reference is a copy, in eval mode).
    """
    refs: Dict[str, nn.Module] = {EAGER: sig.module}
    if cell_variants(sig.model):
        return refs
    if sig.bare is not None:
        refs[TORCH] = BareLSTM(sig.model.to_torch().eval())
    else:
        refs[TORCH] = restore_lstms(copy.deepcopy(sig.model)).eval()
    return refs


# --- comparison ----------------------------------------------------------------------------------


def max_abs_rel(got: np.ndarray, want: np.ndarray) -> Tuple[float, float]:
    """(max |got - want|, that / max |want|), in float64; (inf, inf) when the shapes differ."""
    if got.shape != want.shape:
        return float("inf"), float("inf")
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    err = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(want).max()) if want.size else 0.0
    return err, (err / scale if scale > 0 else err)


def max_diffs(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray], names: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """{output name: max abs difference} over ``names`` (default: every output of ``want``)."""
    return {n: max_abs_rel(got[n], want[n])[0] for n in (list(want) if names is None else names)}


def exceeding(diffs: Mapping[str, float], atol: float) -> Dict[str, float]:
    """The entries of ``diffs`` above ``atol`` (NaN counts as above)."""
    return {k: v for k, v in diffs.items() if not v <= atol}

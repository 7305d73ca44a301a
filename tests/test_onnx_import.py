"""Import from ONNX: an ONNX ``LSTM`` node -> ``deploy_lstm.LSTM`` -> ONNX again.

The oracle is onnxruntime running the ORIGINAL model.  onnxruntime refuses
``layout=1``, so for layout 1 it runs the same weights in a layout-0 node with the
inputs and outputs transposed (the ONNX spec's definition of layout 1);
``test_layout_1_oracle_matches_the_reference_evaluator`` checks that mapping against
``onnx.reference`` on the layout-1 model itself.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import deploy_lstm as dl
from deploy_lstm.errors import ArtifactError, ConfigError
from deploy_lstm import lstm_from_onnx  # the documented way: LSTM has no from_onnx (nn imports no format)
from deploy_lstm.formats.onnx_import import ALL_NODES

ATOL = 1e-5
I, H = 3, 4  # input and hidden size of the hand-built nodes
T, N = 5, 3  # shapes of every run (no export here takes an example)

Arrays = Tuple[np.ndarray, np.ndarray, np.ndarray]


# -- building single-node models -------------------------------------------------------------


def random_weights(D: int, bias: bool, peephole: bool, seed: int, input_size: int = I) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = {
        "W": rng.uniform(-0.6, 0.6, (D, 4 * H, input_size)),
        "R": rng.uniform(-0.6, 0.6, (D, 4 * H, H)),
    }
    if bias:
        w["B"] = rng.uniform(-0.6, 0.6, (D, 8 * H))
    if peephole:
        w["P"] = rng.uniform(-0.6, 0.6, (D, 3 * H))
    return {k: v.astype(np.float32) for k, v in w.items()}


def lstm_model(
    weights: Dict[str, np.ndarray],
    direction: str = "forward",
    layout: int = 0,
    seq: bool = False,
    h: bool = False,
    c: bool = False,
    constant_nodes: bool = False,
    name: str = "lstm",
    **attrs: object,
) -> onnx.ModelProto:
    """One ONNX LSTM node; W/R/B/P as initializers (or Constant nodes); optional graph inputs."""
    D = weights["W"].shape[0]
    inputs = ["X", "W", "R", "B" if "B" in weights else "", "sequence_lens" if seq else "",
              "initial_h" if h else "", "initial_c" if c else "", "P" if "P" in weights else ""]
    while inputs[-1] == "":
        inputs.pop()
    tx, tn = ("T", "N") if layout == 0 else ("N", "T")
    state = [D, "N", H] if layout == 0 else ["N", D, H]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [tx, tn, weights["W"].shape[2]])]
    if seq:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["N"]))
    for flag, which in ((h, "initial_h"), (c, "initial_c")):
        if flag:
            graph_inputs.append(helper.make_tensor_value_info(which, TensorProto.FLOAT, state))
    y = ["T", D, "N", H] if layout == 0 else ["N", "T", D, H]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y)] + [
        helper.make_tensor_value_info(s, TensorProto.FLOAT, state) for s in ("Y_h", "Y_c")
    ]
    tensors = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    nodes = [helper.make_node("Constant", [], [t.name], value=t, name=f"const_{t.name}") for t in tensors] if constant_nodes else []
    nodes.append(helper.make_node(
        "LSTM", inputs, ["Y", "Y_h", "Y_c"], name=name, hidden_size=H, direction=direction, layout=layout, **attrs
    ))
    graph = helper.make_graph(nodes, "g", graph_inputs, outputs, [] if constant_nodes else tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model, full_check=True)
    return model


def run_ort(model: onnx.ModelProto, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def original_outputs(
    weights: Dict[str, np.ndarray], direction: str, layout: int, x: np.ndarray,
    lengths: Optional[np.ndarray], h0: Optional[np.ndarray], c0: Optional[np.ndarray],
) -> Arrays:
    """onnxruntime on the original node, in the module's conventions: (output, h_n, c_n).

    ``x`` and ``h0``/``c0`` are in the module's layout ((T, N, I) or batch_first (N, T, I);
    (D, N, H)).  Layout 1 runs as a layout-0 node on transposed tensors (see module doc)."""
    model = lstm_model(weights, direction, 0, seq=lengths is not None, h=h0 is not None, c=c0 is not None)
    feeds = {"X": x if layout == 0 else x.transpose(1, 0, 2).copy()}
    if lengths is not None:
        feeds["sequence_lens"] = lengths.astype(np.int32)
    if h0 is not None:
        feeds["initial_h"] = h0
    if c0 is not None:
        feeds["initial_c"] = c0
    Y, Y_h, Y_c = run_ort(model, feeds)  # Y (T, D, N, H)
    Tx, D, Nx, Hx = Y.shape
    out = Y.transpose(0, 2, 1, 3) if layout == 0 else Y.transpose(2, 0, 1, 3)
    return out.reshape(out.shape[0], out.shape[1], D * Hx), Y_h, Y_c


def inputs_for(D: int, layout: int, seq: bool, h: bool, c: bool, seed: int) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    rng = np.random.default_rng(100 + seed)
    x = rng.standard_normal((T, N, I) if layout == 0 else (N, T, I)).astype(np.float32)
    lengths = np.array([T, 2, 1], dtype=np.int64) if seq else None
    h0 = rng.standard_normal((D, N, H)).astype(np.float32) if h else None
    c0 = rng.standard_normal((D, N, H)).astype(np.float32) if c else None
    return x, lengths, h0, c0


def run_module(module: torch.nn.Module, x: np.ndarray, lengths, h0, c0) -> Arrays:  # type: ignore[no-untyped-def]
    """Eager forward with zeros for a missing h0/c0 (ONNX's default)."""
    D = 2 if module.bidirectional else 1
    N_ = x.shape[1] if not module.batch_first else x.shape[0]
    zeros = np.zeros((D * module.num_layers, N_, module.hidden_size), np.float32)
    hx = (torch.from_numpy(zeros if h0 is None else h0), torch.from_numpy(zeros if c0 is None else c0))
    with torch.no_grad():
        args = (torch.from_numpy(x), hx) + ((torch.from_numpy(lengths),) if lengths is not None else ())
        out, (h_n, c_n) = module(*args)
    return out.numpy(), h_n.numpy(), c_n.numpy()


def assert_same(got: Arrays, want: Arrays, what: str) -> None:
    for name, g, w in zip(("output", "h_n", "c_n"), got, want):
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=0, err_msg=f"{what}: {name}")


def reexport(module: dl.LSTM, path: Path, x: np.ndarray, lengths, h0, c0) -> Arrays:  # type: ignore[no-untyped-def]
    dl.export_onnx(module, path, lengths=lengths is not None)
    D = 2 if module.bidirectional else 1
    if h0 is None:
        h0 = np.zeros((D * module.num_layers, x.shape[0] if module.batch_first else x.shape[1], module.hidden_size), np.float32)
    if c0 is None:
        c0 = np.zeros_like(h0)
    return dl.OnnxLSTM(path)(x, h0, c0, lengths)


# -- single nodes: every direction x layout, with and without each optional input -----------

OPTIONS = {  # name: (B, P, sequence_lens, initial_h, initial_c)
    "all": (True, True, True, True, True),
    "none": (False, False, False, False, False),
    "B-seq-c": (True, False, True, False, True),
    "P-seq-h": (False, True, True, True, False),
}


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_single_node_round_trip(direction: str, layout: int, options: str, tmp_path: Path) -> None:
    bias, peephole, seq, h, c = OPTIONS[options]
    D = 2 if direction == "bidirectional" else 1
    seed = zlib.crc32(f"{direction}-{layout}-{options}".encode()) % 1000  # hash() of str varies per process
    weights = random_weights(D, bias, peephole, seed)
    model = lstm_model(weights, direction, layout, seq=seq, h=h, c=c)
    x, lengths, h0, c0 = inputs_for(D, layout, seq, h, c, seed)
    want = original_outputs(weights, direction, layout, x, lengths, h0, c0)

    module = lstm_from_onnx(model)
    assert isinstance(module, dl.LSTM)
    assert (module.input_size, module.hidden_size, module.num_layers) == (I, H, 1)
    assert module.bidirectional == (D == 2) and module.batch_first == (layout == 1)
    assert module.bias == bias and module.training
    assert module.config().get("cell", "lstm") == ("peephole" if peephole else "lstm")
    assert_same(run_module(module, x, lengths, h0, c0), want, "eager import")
    assert_same(reexport(module, tmp_path / "again.onnx", x, lengths, h0, c0), want, "re-exported import")


def test_layout_1_oracle_matches_the_reference_evaluator() -> None:
    """The layout-1 oracle (layout 0 on transposed tensors) is what ONNX defines layout 1 to be."""
    from onnx.reference import ReferenceEvaluator

    weights = random_weights(2, True, True, seed=7)
    x, _, h0, c0 = inputs_for(2, 1, False, True, True, seed=7)
    model = lstm_model(weights, "bidirectional", 1, h=True, c=True)
    Y, Y_h, Y_c = ReferenceEvaluator(model).run(None, {
        "X": x, "initial_h": h0.transpose(1, 0, 2).copy(), "initial_c": c0.transpose(1, 0, 2).copy()
    })  # Y (N, T, D, H), Y_h (N, D, H)
    got = (Y.reshape(N, T, 2 * H), Y_h.transpose(1, 0, 2), Y_c.transpose(1, 0, 2))
    assert_same(got, original_outputs(weights, "bidirectional", 1, x, None, h0, c0), "reference vs oracle")


def test_constant_node_weights(tmp_path: Path) -> None:
    weights = random_weights(2, True, False, seed=3)
    model = lstm_model(weights, "bidirectional", 0, seq=True, constant_nodes=True)
    assert not model.graph.initializer
    x, lengths, _, _ = inputs_for(2, 0, True, False, False, seed=3)
    want = original_outputs(weights, "bidirectional", 0, x, lengths, None, None)
    module = lstm_from_onnx(model)
    assert_same(run_module(module, x, lengths, None, None), want, "eager import")
    assert_same(reexport(module, tmp_path / "again.onnx", x, lengths, None, None), want, "re-exported import")


def test_zero_bias_keeps_bias_and_file_paths_work(tmp_path: Path) -> None:
    weights = random_weights(1, True, False, seed=4)
    weights["B"][:] = 0
    path = tmp_path / "m.onnx"
    onnx.save(lstm_model(weights), str(path))
    module = lstm_from_onnx(path)
    assert module.bias and not module.bias_ih_l0.any()
    assert isinstance(lstm_from_onnx(str(path)), dl.LSTM)


# -- stacks --------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "peephole"])
def test_deploy_lstm_export_imports_as_one_stack(cell: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = dl.LSTM(3, 4, num_layers=2, bidirectional=True, cell=cell)
    path = dl.export_onnx(src, tmp_path / "m.onnx", lengths=True)
    module = lstm_from_onnx(path)
    assert isinstance(module, dl.LSTM) and module.config() == src.config()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(module.state_dict()[k], v, atol=0, rtol=0)
    x = np.random.default_rng(0).standard_normal((7, 2, 3)).astype(np.float32)
    lengths = np.array([7, 3], np.int64)
    want = dl.OnnxLSTM(path)(x, None, None, lengths)
    assert_same(run_module(module, x, lengths, None, None), want, "eager import")
    assert_same(reexport(module, tmp_path / "again.onnx", x, lengths, None, None), want, "re-exported import")


@pytest.mark.parametrize("bidirectional,batch_first", [(False, False), (True, True)])
def test_torch_legacy_export_imports_as_one_stack(bidirectional: bool, batch_first: bool, tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = torch.nn.LSTM(5, 6, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    path = tmp_path / "torch.onnx"
    example = torch.randn(2, 3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and batch-size warnings
        torch.onnx.export(src, (example,), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "a", 1: "b"}})
    module = lstm_from_onnx(path)
    assert isinstance(module, dl.LSTM)
    assert (module.num_layers, module.bidirectional) == (2, bidirectional)
    assert module.batch_first is False  # the exporter transposes around layout-0 nodes
    for k, v in src.state_dict().items():
        torch.testing.assert_close(module.state_dict()[k], v, atol=0, rtol=0)
    x = np.random.default_rng(1).standard_normal((4, 3, 5)).astype(np.float32)  # not the example's shape
    (want,) = run_ort(onnx.load(str(path)), {"x": x})[:1]
    got = run_module(module, x.transpose(1, 0, 2).copy() if batch_first else x, None, None, None)[0]
    np.testing.assert_allclose(got.transpose(1, 0, 2) if batch_first else got, want, atol=ATOL, rtol=0)


def two_nodes(link: str) -> onnx.ModelProto:
    """Two LSTM nodes ``first`` and ``second``.  ``link``: "squeeze" (a forward stack through
    Squeeze(Y1, [1])), "parallel" (both read X), "squeeze+output" / "squeeze+reader" (the
    stack, but the tensor in between is also a graph output / also read by a Relu),
    "reshape-no-transpose" (bidirectional, Y1 (T, 2, N, H) reshaped to (T, N, 2H) without
    the Transpose: the data come out scrambled, not a stack)."""
    bidirectional = link == "reshape-no-transpose"
    D = 2 if bidirectional else 1
    direction = "bidirectional" if bidirectional else "forward"
    w1 = random_weights(D, True, False, seed=11)
    w2 = random_weights(D, True, False, seed=12, input_size=I if link == "parallel" else D * H)
    inits = [numpy_helper.from_array(v, f"{k}{i}") for i, w in ((1, w1), (2, w2)) for k, v in w.items()]
    if bidirectional:
        inits.append(numpy_helper.from_array(np.array([0, -1, D * H], np.int64), "shape"))
        between = helper.make_node("Reshape", ["Y1", "shape"], ["X2"], name="reshape")
    else:
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
        between = helper.make_node("Squeeze", ["Y1", "axes"], ["X2"], name="squeeze")
    nodes = [
        helper.make_node("LSTM", ["X", "W1", "R1", "B1"], ["Y1"], name="first", hidden_size=H, direction=direction),
        between,
        helper.make_node("LSTM", ["X" if link == "parallel" else "X2", "W2", "R2", "B2"], ["Y2"], name="second",
                         hidden_size=H, direction=direction),
    ]
    outputs = [helper.make_tensor_value_info("Y2", TensorProto.FLOAT, None)]
    if link in ("parallel", "squeeze+output"):
        outputs.append(helper.make_tensor_value_info("X2", TensorProto.FLOAT, None))
    if link == "squeeze+reader":
        nodes.append(helper.make_node("Relu", ["X2"], ["Z"], name="relu"))
        outputs.append(helper.make_tensor_value_info("Z", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "N", I])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def test_a_hand_built_stack_and_its_layers() -> None:
    model = two_nodes("squeeze")
    module = lstm_from_onnx(model)
    assert isinstance(module, dl.LSTM) and module.num_layers == 2
    x = np.random.default_rng(2).standard_normal((T, N, I)).astype(np.float32)
    (want,) = run_ort(model, {"X": x})
    np.testing.assert_allclose(run_module(module, x, None, None, None)[0], want[:, 0], atol=ATOL, rtol=0)
    layers = lstm_from_onnx(model, node=ALL_NODES)
    assert [m.input_size for m in layers] == [I, H] and all(m.num_layers == 1 for m in layers)  # graph order
    assert lstm_from_onnx(model, node="second").input_size == H


@pytest.mark.parametrize("link,why", [
    ("parallel", r"'second' takes 3 input features, 'first' gives 4"),
    ("squeeze+output", r"'X2' between 'first' and 'second' is a graph output"),
    ("squeeze+reader", r"'X2' after 'first' is read by 2 nodes, not 1"),
    ("reshape-no-transpose", r"its input's axes are \(T, D, N, H\), not \(T, N, D, H\)"),
])
def test_nodes_that_are_not_one_stack_need_node(link: str, why: str) -> None:
    model = two_nodes(link)
    run_ort(model, {"X": np.zeros((T, N, I), np.float32)})  # a valid graph, just not a stack
    with pytest.raises(ConfigError, match=r"2 LSTM nodes that do not form one stack \(.*" + why + r".*\); pick one with "
                       r"node=, one of: 'first', 'second', or node='\*' for all"):
        lstm_from_onnx(model)
    assert [m.num_layers for m in lstm_from_onnx(model, node="*")] == [1, 1]
    with pytest.raises(ConfigError, match=r"node='third' is not an LSTM node .*'first', 'second'"):
        lstm_from_onnx(model, node="third")


# -- refused -------------------------------------------------------------------------------


@pytest.mark.parametrize("attrs,message", [
    ({"activations": ["Relu", "Tanh", "Tanh"]}, r"activations=\['Relu', 'Tanh', 'Tanh'\]"),
    ({"clip": 1.0}, r"clip=1\.0"),
    ({"input_forget": 1}, r"input_forget=1"),
    ({"activation_alpha": [0.5]}, r"activation_alpha=\[0\.5\]"),
    ({"direction": "reverse"}, r"direction='reverse'.*bidirectional"),
])
def test_attributes_the_module_cannot_express(attrs: Dict[str, object], message: str) -> None:
    kw = dict(attrs)
    direction = str(kw.pop("direction", "forward"))
    model = lstm_model(random_weights(1, True, False, seed=5), direction, **kw)
    with pytest.raises(ConfigError, match=r"LSTM node 'lstm' has " + message):
        lstm_from_onnx(model)


def test_default_activations_spelled_out_are_accepted() -> None:
    model = lstm_model(random_weights(2, False, False, seed=6), "bidirectional", activations=["Sigmoid", "Tanh", "Tanh"] * 2)
    assert lstm_from_onnx(model).bidirectional


def test_no_lstm_node() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["X"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(ConfigError, match=r"has no LSTM node \(its operators: Relu\)"):
        lstm_from_onnx(helper.make_model(graph))


def test_weights_that_are_graph_inputs() -> None:
    model = lstm_model(random_weights(1, False, False, seed=8))
    model.graph.input.append(helper.make_tensor_value_info("R2", TensorProto.FLOAT, [1, 4 * H, H]))
    model.graph.node[0].input[2] = "R2"
    with pytest.raises(ConfigError, match=r"its R input 'R2' is not an initializer"):
        lstm_from_onnx(model)


def test_files_that_are_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "notes.onnx"
    bad.write_bytes(b"this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(ArtifactError, match=r"notes\.onnx is not (an|a valid) ONNX model"):
        lstm_from_onnx(bad)
    with pytest.raises(ArtifactError, match=r"no ONNX model at"):
        lstm_from_onnx(tmp_path / "missing.onnx")


# -- the import is a normal module --------------------------------------------------------


def test_imported_module_fine_tunes_and_scripts() -> None:
    model = lstm_model(random_weights(2, True, False, seed=9), "bidirectional", 1)
    module = lstm_from_onnx(model)
    assert all(p.requires_grad for p in module.parameters())
    x = torch.randn(2, 6, I)
    out, _ = module(x)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    scripted = torch.jit.script(module)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x)[0], module(x)[0], atol=ATOL, rtol=0)

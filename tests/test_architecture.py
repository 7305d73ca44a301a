"""The layout holds: imports run one way, the module knows no exporter, import is light,
exports leave the caller's model alone (also while another thread uses it), and the
export folder is the only reader of what it writes."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import deploy_lstm as dl
from deploy_lstm import folder as folder_mod

PACKAGE = Path(dl.__file__).resolve().parent

# Lower layers first: a module may import only modules of its own or a lower layer.
LAYERS = [
    {"version", "errors"},
    {"contract"},
    {"recurrence"},
    {"model"},
    {"convert"},
    {"tracing"},
    {"exporting"},
    {"onnx_export", "torchscript", "aoti"},
    {"onnx_import"},
    {"folder"},
    {"runtime"},
    {"quantize"},
    {"validation"},
    {"recommend"},
    {"triton"},
    {"protocol", "metrics"},
    {"engine"},
    {"http_server", "grpc_server"},
    {"server"},
    {"bench_report"},
    {"bench_backends", "bench_memory"},
    {"pipeline", "bench"},
    {"cli"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
# imports inside a function that are allowed: optional dependencies, loaded only when used
LOCAL_IMPORTS_ALLOWED = {("bench_report", "matplotlib"), ("bench_report", "matplotlib.pyplot")}


def _imports(path: Path):  # type: ignore[no-untyped-def]
    """(module-level imports of package modules, (name, imported names) pairs, function-local imports)."""
    tree = ast.parse(path.read_text())
    top, names, local = set(), [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            mod = (node.module or "").split(".")[0]
            if mod:
                top.add(mod)
                names += [(mod, a.name) for a in node.names]
            else:
                top.update(a.name for a in node.names)
    for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                local += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                local.append(("." * node.level) + (node.module or ""))
    return top, names, local


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_every_module_has_a_layer() -> None:
    assert sorted(LEVEL) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_imports_run_one_way(module: str) -> None:
    top, names, local = _imports(PACKAGE / f"{module}.py")
    upward = sorted(m for m in top if m in LEVEL and LEVEL[m] > LEVEL[module])
    assert not upward, f"{module} imports {upward}, which sit above it"
    private = [f"{m}.{n}" for m, n in names if n.startswith("_") and n != "__version__"]
    assert not private, f"{module} imports private names of other modules: {private}"
    local = [m for m in local if (module, m) not in LOCAL_IMPORTS_ALLOWED]
    assert not local, f"{module} imports inside functions: {local}"


def test_no_module_global_state() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)], f"{path} sets module globals"


def test_model_knows_no_exporter() -> None:
    """No name in model.py's code (docstrings aside) refers to exporting or ONNX."""
    tree = ast.parse((PACKAGE / "model.py").read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    # torch.jit.export marks a method TorchScript compiles besides forward (the streaming step): not an exporter
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and ast.unparse(n) != "torch.jit.export"}
    names -= {"from_onnx", "lstm_from_onnx"}  # the importer's door (LSTM.from_onnx), which loads onnx_import on first use
    assert not [n for n in names if "export" in n.lower() or "onnx" in n.lower()]


def test_import_is_light() -> None:
    """The module alone does not load onnx, onnxscript or onnxruntime; export loads them on use."""
    code = (
        "import sys, deploy_lstm\n"
        "heavy = ('onnx', 'onnxscript', 'onnxruntime')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "deploy_lstm.LSTM(2, 3)(deploy_lstm.LSTM(2, 3).weight_ih_l0.new_zeros(4, 1, 2))\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "deploy_lstm.export_onnx\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before, after_use, after_export = out.stdout.splitlines()
    assert before == "[]" and after_use == "[]"
    assert "onnx" in after_export


# --- exports leave the caller's model alone ------------------------------------------------


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = torch.nn.Sequential()
    m.add_module("rnn", dl.LSTM(3, 5, num_layers=2))
    return m


def test_exports_do_not_touch_the_model(tmp_path: Path) -> None:
    model = dl.LSTM(3, 5, proj_size=2, bidirectional=True).train()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    children = list(model.modules())
    dl.export_onnx(model, tmp_path / "a.onnx", lengths=True)
    dl.export_onnx(model, tmp_path / "b.onnx", exporter="torchscript")
    dl.export_torchscript(model, tmp_path / "c.ts", fused=True)
    dl.validate(model, tmp_path / "a.onnx", tmp_path / "c.ts", devices=("cpu",), cases=((2, 3),))
    assert model.training and model.fused is False
    assert list(model.modules()) == children and not list(model.buffers())
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k])


def test_an_export_does_not_change_another_threads_eager_calls(tmp_path: Path) -> None:
    """While an export traces the model, the same model keeps running eagerly elsewhere
    (the old process-wide hook sent those calls through the export graph)."""
    model = dl.LSTM(3, 5, num_layers=2, bidirectional=True).eval()
    x = torch.randn(6, 2, 3)
    with torch.no_grad():
        expected = model(x)[0]
    errors: list = []
    done = threading.Event()

    def eager_loop() -> None:
        try:
            while not done.is_set():
                with torch.no_grad():
                    got = model(x)[0]
                if not torch.equal(got, expected):
                    errors.append(float((got - expected).abs().max()))
        except Exception as e:  # recorded and asserted below
            errors.append(repr(e))

    worker = threading.Thread(target=eager_loop)
    worker.start()
    try:
        for exporter in ("dynamo", "torchscript"):
            dl.export_onnx(model, tmp_path / f"{exporter}.onnx", exporter=exporter)
    finally:
        done.set()
        worker.join()
    assert errors == []
    out, _, _ = dl.OnnxLSTM(tmp_path / "dynamo.onnx")(x.numpy())
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-5, rtol=0)


def test_two_exports_in_two_threads(tmp_path: Path) -> None:
    models = [dl.LSTM(3, 5, proj_size=2).eval(), dl.LSTM(3, 5, num_layers=2).eval()]
    paths = [tmp_path / "p.onnx", tmp_path / "q.ts"]
    failures: list = []

    def run(i: int) -> None:
        try:
            if i == 0:
                dl.export_onnx(models[0], paths[0], exporter="torchscript")
            else:
                dl.export_torchscript(models[1], paths[1])
        except Exception as e:  # recorded and asserted below
            failures.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert dl.validate(models[0], paths[0], devices=("cpu",), cases=((2, 4),)).passed
    assert dl.validate(models[1], torchscript_path=paths[1], cases=((2, 4),)).passed


def test_shared_lstm_stays_shared_in_the_traced_copy() -> None:
    from deploy_lstm.tracing import traceable

    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = dl.LSTM(3, 3)
            self.b = self.a

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.b(self.a(x)[0])[0]

    model = Twice()
    copy, routes = traceable(model, "scan")
    assert copy.a is copy.b and copy.a is not model.a
    assert routes == {"a": "native", "b": "native"}
    assert copy.a.weight_ih_l0 is model.a.weight_ih_l0  # parameters shared, not copied


# --- the export folder -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("folder") / "out"
    dl.export_folder(dl.LSTM(3, 4, num_layers=2), out, lengths=True, artifacts=["onnx", "torchscript"], devices=("cpu",))
    return out


def test_folder_round_trip(written: Path) -> None:
    f = dl.load(written)
    assert f.format_version == folder_mod.FORMAT_VERSION
    assert f.config == dl.LSTMConfig(3, 4, num_layers=2)
    assert sorted(f.artifacts) == ["onnx", "torchscript", "weights"]
    assert f.io.input_names == ["input", "h0", "c0", "lengths"]
    assert f.report is not None and f.report["passed"]
    assert {"deploy_lstm", "torch", "onnx", "onnxruntime", "python"} <= set(f.versions)
    assert f.artifacts["onnx"].details["routes"] == {"": "native"}
    assert dl.validate_folder(f, devices=("cpu",)).passed
    manifest = json.loads((written / "manifest.json").read_text())
    assert manifest["format"] == "deploy-lstm-export" and len(manifest["artifacts"]["onnx"]["sha256"]) == 64


def test_folder_refuses_tampering_and_other_formats(written: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(written, copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"X")
    with pytest.raises(dl.ArtifactError, match=r"model.onnx does not match its checksum"):
        dl.load(copy)
    dl.load(copy, verify=False)  # still readable when asked not to verify
    (copy / "model.onnx").unlink()
    with pytest.raises(dl.ArtifactError, match=r"model.onnx is listed in manifest.json but missing"):
        dl.load(copy)
    manifest = json.loads((written / "manifest.json").read_text())
    manifest["format_version"] = 0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(dl.ArtifactError, match=r"format version 0; .* reads version 1"):
        dl.load(copy)
    with pytest.raises(dl.ArtifactError, match=r"has no torchscript|has no aoti artifact"):
        dl.load(written).file("aoti")


def test_a_failed_folder_export_changes_nothing(written: Path, tmp_path: Path) -> None:
    import shutil

    target = tmp_path / "t"
    shutil.copytree(written, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(dl.ExportError):
        dl.export_folder(dl.LSTM(3, 4), target, opset=3, devices=("cpu",))
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

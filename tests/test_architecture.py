"""The layout holds: imports run one way, the module knows no exporter, import is light,
and exports leave the caller's model alone (also while another thread uses it).
(The export folder's own tests are in test_folder.py.)"""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import deploy_lstm as dl

PACKAGE = Path(dl.__file__).resolve().parent

# The rooms of the house, and the one rule their imports follow:
#   cli -> {pipeline, bench, serve} -> check -> {exporters, runtime} -> formats -> nn -> errors
# A room may import itself and the rooms listed for it here, and nothing else.
BASE = {"errors", "version"}
ALLOWED = {
    "version": set(),
    "errors": set(),
    "nn": BASE,
    "formats": {"nn"} | BASE,
    "exporters": {"formats", "nn"} | BASE,
    "runtime": {"formats", "nn"} | BASE,
    "check": {"exporters", "runtime", "formats", "nn"} | BASE,
    "serve": {"runtime", "formats", "nn"} | BASE,
    "bench": {"check", "exporters", "runtime", "formats", "nn"} | BASE,
    "pipeline": {"check", "exporters", "runtime", "formats", "nn"} | BASE,
    "demo": {"runtime", "formats", "nn"} | BASE,
    "cli": {"pipeline", "bench", "serve", "check", "exporters", "runtime", "formats", "nn", "demo"} | BASE,
}
# the one module of a room allowed more than its room: the Triton repository writer exports and checks
EXCEPTIONS = {"serve.repository": {"exporters", "check"}}
# dynamic imports whose target is the user's (a model factory, a dependency's version), never a package module
USER_IMPORTS = {"formats.folder"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_TOP_LEVEL_MODULES = 8


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _room(module: str) -> str:
    return module.split(".")[0]


def _resolve(module: str, path: Path, level: int, name: str) -> str:
    """The package-relative dotted name an import statement refers to ("" = the package itself)."""
    if level == 0:
        return name[len("deploy_lstm") + 1 :] if name.startswith("deploy_lstm.") else ("" if name == "deploy_lstm" else "#" + name)
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([name] if name else [])])


def _imports(module: str, path: Path) -> list:
    """Every package module that ``module`` imports: module level, inside functions, through
    ``importlib.import_module`` and ``__import__`` (as (target, line, how))."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(_resolve(module, path, 0, a.name), node.lineno, "import") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node.level, node.module or "")
            for a in node.names:  # "from deploy_lstm.x import y" may name a module y
                sub = f"{target}.{a.name}" if target and not target.startswith("#") else (a.name if target == "" else target)
                found.append((sub if sub in MODULES else target, node.lineno, "from"))
        elif isinstance(node, ast.Call):
            f = node.func
            dynamic = (isinstance(f, ast.Attribute) and f.attr == "import_module") or (isinstance(f, ast.Name) and f.id in ("__import__", "import_module"))
            if dynamic:
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    dots = len(arg.value) - len(arg.value.lstrip("."))
                    found.append((_resolve(module, path, dots, arg.value[dots:]), node.lineno, "dynamic"))
                elif module not in USER_IMPORTS and module != "":
                    found.append(("?" + ast.unparse(arg) if arg is not None else "?", node.lineno, "dynamic"))
    return [(t, line, how) for t, line, how in found if not t.startswith("#")]


def _owner(target: str) -> str:
    """The module an import target belongs to (a name imported from a package module is that module)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def test_at_most_eight_modules_at_the_top() -> None:
    top = [m for m in MODULES if m and "." not in m and MODULES[m].name != "__init__.py"]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    assert set(top) <= set(ALLOWED), f"modules outside any room: {set(top) - set(ALLOWED)}"


@pytest.mark.parametrize("module", [m for m in MODULES if m])
def test_imports_run_one_way(module: str) -> None:
    room = _room(module)
    assert room in ALLOWED, f"{module} is in no room of the rule"
    allowed = ALLOWED[room] | EXCEPTIONS.get(module, set()) | {room}
    bad = []
    for target, line, how in _imports(module, MODULES[module]):
        if target.startswith("?"):
            bad.append(f"line {line}: an import whose target cannot be read ({target[1:]})")
        elif target == "":
            bad.append(f"line {line}: imports the package's face (deploy_lstm) from inside")
        elif not _owner(target):
            bad.append(f"line {line}: {how} {target}, which is no module of the package")
        elif _room(target) not in allowed:
            bad.append(f"line {line}: {how} {target} (room {_room(target)})")
    assert not bad, f"{module} (room {room}, may import {sorted(allowed)}):\n" + "\n".join(bad)


def test_exporters_and_runtime_never_import_each_other() -> None:
    for module, path in MODULES.items():
        if _room(module) in ("exporters", "runtime"):
            other = {"exporters": "runtime", "runtime": "exporters"}[_room(module)]
            assert not [t for t, _, _ in _imports(module, path) if _room(t) == other], module


def test_no_circle_between_modules() -> None:
    graph = {m: {_owner(t) for t, _, _ in _imports(m, p) if _owner(t) and _owner(t) != m} for m, p in MODULES.items() if m}
    graph = {m: {t for t in ts if MODULES[t].name != "__init__.py"} for m, ts in graph.items()}
    state: dict = {}

    def visit(m: str, stack: list) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("circle: " + " -> ".join(stack[stack.index(t):] + [m, t]) if t in stack else f"circle through {m} -> {t}")
            if t not in state:
                visit(t, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_rule_test_sees_hidden_imports(tmp_path: Path) -> None:
    """The reader finds imports inside functions and through importlib, not only at the top."""
    src = tmp_path / "x.py"
    src.write_text(
        "import importlib\n"
        "def f():\n"
        "    from deploy_lstm.serve import model\n"
        "    importlib.import_module('deploy_lstm.bench.command')\n"
        "    __import__('deploy_lstm.cli')\n"
        "    importlib.import_module('.onnx_import', __package__)\n"
        "    importlib.import_module(name)\n"
    )
    targets = [t for t, _, _ in _imports("nn.x", src)]
    assert targets == ["serve.model", "bench.command", "cli", "nn.onnx_import", "?name"]


def test_sizes_a_reader_can_hold() -> None:
    long_modules = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    long_functions = []
    for m, p in MODULES.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{m}.{node.name} ({n})")
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def test_every_module_says_what_it_is_for() -> None:
    missing = [m or "deploy_lstm" for m, p in MODULES.items() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, f"modules without a docstring: {missing}"


def test_no_module_global_state() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)], f"{path} sets module globals"


NN_MODULES_THAT_KNOW_NO_EXPORTER = ["nn", "nn.lstm", "nn.cell", "nn.recurrence", "nn.config", "nn.flat", "nn.checks", "nn.layout", "nn.step", "nn.aten", "nn.swap"]


@pytest.mark.parametrize("module", [m for m in NN_MODULES_THAT_KNOW_NO_EXPORTER if m in MODULES])
def test_modules_know_no_exporter(module: str) -> None:
    """No name in the modules' code (docstrings aside) refers to exporting or ONNX."""
    tree = ast.parse(MODULES[module].read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    # torch.jit.export marks a method TorchScript compiles besides forward (the streaming step): not an exporter
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and ast.unparse(n) != "torch.jit.export"}
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
    from deploy_lstm.exporters.standins import traceable

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

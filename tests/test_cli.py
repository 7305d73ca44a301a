"""The deploy-lstm CLI (issue #4), run for real in subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import onnx

import deploy_lstm
from deploy_lstm.cli import main
from deploy_lstm.exporters.onnx import graph_ops

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy_lstm.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def no_partial_files(root: Path) -> bool:
    """No staging folder or temporary file (all start with '.') is left anywhere under root."""
    return not any(p.name.startswith(".") for p in root.rglob("*"))


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, cli("export", "--demo", "--out", str(out))


def test_demo_exports_validates_and_forecasts(demo_export):
    out, r = demo_export
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "model.ts", "weights.safetensors"]
    assert "all checks passed" in r.stdout and "✗" not in r.stdout
    assert "onnxruntime-cpu" in r.stdout and "torchscript" in r.stdout and "torch.nn.LSTM" in r.stdout
    folder = deploy_lstm.load(out)
    assert folder.model == {"kind": "factory", "factory": "deploy_lstm.demo:export_spec"}
    assert folder.report["passed"] and all(c["max_abs"] <= 1e-5 for c in folder.report["checks"])
    assert {c["output"] for c in folder.report["checks"]} == {"output", "hn", "cn"}
    assert "exporting model.onnx" in r.stderr  # progress goes to stderr
    hint = f"python -m deploy_lstm.demo --onnx {out / 'model.onnx'}"
    assert hint in r.stdout
    f = subprocess.run([sys.executable, *hint.split()[1:]], capture_output=True, text=True, timeout=300)
    assert f.returncode == 0, f.stderr
    # a typical held-out series, and beside it the errors over all 64 (parsed in test_demo): the README's 0.168
    assert re.search(r"^forecast of series seed=\d+ \(typical\*\)", f.stdout, re.M), f.stdout
    assert "64 held-out series" in f.stdout and re.search(r"^forecast +0\.\d{4} +0\.\d{4} +0\.16\d\d ", f.stdout, re.M), f.stdout


def test_validate_and_info_on_an_export(demo_export):
    out, _ = demo_export
    r = cli("validate", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["passed"] is True
    r = cli("info", str(out / "model.onnx"))
    assert r.returncode == 0, r.stderr
    assert "input: float32 [batch, sequence, 1]" in r.stdout
    assert "LSTM×2" in r.stdout  # the demo's 2 layers, one native ONNX LSTM node each
    r2 = cli("info", str(out))  # the folder: its model.onnx
    assert r2.returncode == 0 and r2.stdout == r.stdout


CONFIGS = [
    dict(input_size=3, hidden_size=5),
    dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=True),
    dict(input_size=2, hidden_size=6, proj_size=3, bias=False),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["simple", "2l-bidir", "proj-nobias"])
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_export_nn_lstm_checkpoints(tmp_path, cfg, fmt):
    torch.manual_seed(0)
    ckpt = tmp_path / f"lstm.{fmt}"
    state = nn.LSTM(**cfg).state_dict()
    if fmt == "pt":
        torch.save(state, ckpt)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(ckpt))
    out = tmp_path / "out"
    r = cli("export", str(ckpt), "--out", str(out), "--lengths", "--exporter", "torchscript", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["passed"] and report["config"]["proj_size"] == cfg.get("proj_size", 0)
    assert any("lengths" in c for c in report["cases"])
    info = json.loads(cli("info", str(out / "model.onnx"), "--json").stdout)
    assert info["inputs"][0].startswith("input: float32 [sequence, batch,")


def test_prefix_batch_first_quiet(tmp_path):
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.encoder = nn.Module()
            self.encoder.rnn = nn.LSTM(4, 8, batch_first=True)
            self.decoder = nn.LSTM(8, 8)

    ckpt = tmp_path / "model.pt"
    torch.save(Model().state_dict(), ckpt)
    r = cli("export", str(ckpt), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "holds 2 LSTMs; pick one with --prefix" in r.stderr
    r = cli("export", str(ckpt), "--prefix", "encoder.rnn.", "--batch-first", "--artifacts", "onnx", "--quiet", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    assert (tmp_path / "o" / "model.onnx").is_file() and not (tmp_path / "o" / "model.ts").exists()
    folder = deploy_lstm.load(tmp_path / "o")
    assert folder.config.batch_first is True and sorted(folder.artifacts) == ["onnx", "weights"]


class Evil:
    def __reduce__(self):  # a checkpoint that runs code when unpickled
        return (os.system, ("echo pwned > pwned.txt",))


def _write_bad(tmp_path: Path, kind: str) -> list[str]:
    ckpt = tmp_path / "ckpt.pt"
    if kind == "missing":
        return [str(tmp_path / "nope.pt")]
    if kind == "corrupt":
        ckpt.write_bytes(b"\x80\x02not really a pickle")
    elif kind == "code":
        torch.save({"weight": Evil()}, ckpt)
    elif kind == "no-lstm":
        torch.save(nn.Linear(3, 4).state_dict(), ckpt)
    elif kind == "bad-safetensors":
        ckpt = tmp_path / "ckpt.safetensors"
        ckpt.write_bytes(b"garbage")
    else:
        torch.save(nn.LSTM(3, 5, num_layers=2).state_dict(), ckpt)
    extra = {
        "prefix": ["--prefix", "encoder."],
        "contradiction": ["--num-layers", "3"],
        "contradiction-bidir": ["--bidirectional"],
    }.get(kind, [])
    return [str(ckpt), *extra]


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", r"checkpoint .*nope.pt does not exist"),
        ("corrupt", r"is not a readable torch.save file"),
        ("code", r"refusing to load .*carries code"),
        ("no-lstm", r"holds no LSTM: no key ends in 'weight_ih_l0'"),
        ("bad-safetensors", r"is not a readable safetensors file"),
        ("prefix", r"--prefix 'encoder.' matches no LSTM in the checkpoint; LSTM prefixes found: ''"),
        ("contradiction", r"--num-layers 3 contradicts the weights, which say num_layers=2"),
        ("contradiction-bidir", r"--bidirectional True contradicts the weights, which say bidirectional=False"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, kind, message):
    args = _write_bad(tmp_path, kind)
    out = tmp_path / "out"
    r = cli("export", *args, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploy-lstm: error: "), r.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists() and no_partial_files(tmp_path)
    assert not (tmp_path / "pwned.txt").exists()


def test_unwritable_out_and_existing_artifacts_untouched(tmp_path):
    ckpt = tmp_path / "lstm.pt"
    torch.save(nn.LSTM(3, 4).state_dict(), ckpt)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli("export", str(ckpt), "--out", str(blocker))
    assert r.returncode == 2 and "exists and is not a folder" in r.stderr
    # a failing export (bad opset) leaves an existing folder exactly as it was
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_text("previous")
    r = cli("export", str(ckpt), "--out", str(out), "--opset", "5")
    assert r.returncode == 2 and "opset 5 is not supported by the dynamo exporter; expected 18..23" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"] and (out / "model.onnx").read_text() == "previous"
    assert no_partial_files(tmp_path)


def test_validation_failure_exits_1(tmp_path):
    ckpt = tmp_path / "lstm.pt"
    torch.save(nn.LSTM(3, 4).state_dict(), ckpt)
    r = cli("export", str(ckpt), "--out", str(tmp_path / "o"), "--atol", "1e-12", "--artifacts", "torchscript")
    assert r.returncode == 1
    assert "✗" in r.stdout and "FAILED" in r.stdout


def test_version_and_help():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("deploy-lstm 0.")
    for cmd in ("export", "validate", "info"):
        r = cli(cmd, "--help")
        assert r.returncode == 0 and "example" in r.stdout
    r = cli()
    assert r.returncode == 2 and "COMMAND" in r.stdout


@pytest.mark.parametrize(
    "script, args, made, says",
    [
        ("export_tagger.py", ["--out", "."], ["tagger-dynamo.onnx", "tagger-torchscript.onnx"], r"max abs error \d\.\d+e-\d+ over 5 shapes \(passed\)"),
        ("export_language_model.py", ["--out", ".", "--steps", "4"], ["lm-dynamo.onnx", "lm-torchscript.onnx", "lm.ts"],
         r"generated \(onnxruntime\): (\[[\d, ]+\])\ngenerated \(eager nn.LSTM\): \1"),
        ("export_seq2seq.py", ["--out", "."], ["encoder.onnx", "decoder.onnx", "encoder.ts", "decoder.ts"],
         r"greedy tokens \(onnxruntime\):  (\[.+\])\ngreedy tokens \(eager nn.LSTM\): \1"),
        ("export_torchscript.py", ["lstm.ts", "--input-size", "8", "--hidden-size", "16", "--bidirectional"], ["lstm.ts"], r"reloaded max diff"),
    ],
    ids=["tagger", "language-model", "seq2seq", "torchscript"],
)
def test_export_scripts_users_copy(tmp_path, script, args, made, says):
    path = REPO / "export" / script
    r = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert all((tmp_path / m).is_file() for m in made), sorted(p.name for p in tmp_path.iterdir())
    assert re.search(says, r.stdout), r.stdout


def test_quantize_int8_is_validated_as_its_own_backend(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "lstm.pt"
    torch.save(nn.LSTM(8, 32, num_layers=2).state_dict(), ckpt)
    out = tmp_path / "o"
    r = cli("export", str(ckpt), "--out", str(out), "--quantize", "int8", "--artifacts", "onnx", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    int8 = [c for c in report["checks"] if c["backend"] == "onnxruntime-int8"]
    from deploy_lstm.formats.folder import load
    from deploy_lstm.check.int8 import int8_tolerance

    atol = int8_tolerance(load(out).model_spec().model)  # derived from the weights
    assert int8 and all(0 < c["max_abs"] <= c["atol"] == pytest.approx(atol) for c in int8)  # lossy, within its tolerance
    # the summary, in the JSON too: at hidden 32 int8 is not expected to pay (quantize.INT8_SMALL_HIDDEN)
    assert report["int8"]["max_abs"] > 0 and not report["int8"]["expected_worth_it"]
    assert "at hidden size 32" in report["int8"]["advice"]
    info = json.loads(cli("info", str(out / "model.int8.onnx"), "--json").stdout)
    assert "DynamicQuantizeLSTM" in info["operators"]
    r = cli("validate", str(out), "--quiet")
    assert r.returncode == 0 and r.stderr == ""


def test_bench_smoke_through_the_cli(tmp_path):
    r = cli("bench", "--quick", "--config", "input_size=4,hidden_size=8", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    names = set(res["backends"])
    assert {"nn.LSTM eager", "deploy_lstm torchscript (fused)", "ort: ours (dynamo)", "ort: ours int8"} <= names
    # every backend this machine has gives a number, in every case (no projection: nn.LSTM's export works too)
    assert all("median_ms" in case["results"][n] for case in res["cases"] for n in names), res["cases"]
    assert (tmp_path / "results.md").read_text().startswith("# deploy-lstm benchmark")


# --- every subcommand with bad arguments: exit 2, one line, no traceback ------------------


def _old_format_folder(tmp_path: Path) -> Path:
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text("{}")  # what deploy-lstm wrote before manifests
    return old


def _tampered_folder(tmp_path: Path) -> Path:
    model = deploy_lstm.LSTM(3, 4)
    deploy_lstm.export_folder(model, tmp_path / "t", artifacts=["torchscript"], devices=("cpu",))
    with open(tmp_path / "t" / "model.ts", "ab") as f:
        f.write(b"\0")
    return tmp_path / "t"


def _ts_only_folder(tmp_path: Path) -> Path:
    deploy_lstm.export_folder(deploy_lstm.LSTM(3, 4), tmp_path / "ts", artifacts=["torchscript"], devices=("cpu",))
    return tmp_path / "ts"


def _future_folder(tmp_path: Path) -> Path:
    deploy_lstm.export_folder(deploy_lstm.LSTM(3, 4), tmp_path / "f", artifacts=["torchscript"], devices=("cpu",))
    manifest = json.loads((tmp_path / "f" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "f" / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "f"


BAD_ARGS = {
    "export-no-source": (lambda t: ["export", "--out", str(t / "o")], r"give a CHECKPOINT"),
    "export-bad-artifacts": (lambda t: ["export", "--demo", "--artifacts", "onnx,pdf", "--out", str(t / "o")], r"expected a non-empty subset of onnx, torchscript, aoti"),
    "export-model-unimportable": (lambda t: ["export", "--model", "no_such_module_xyz:make", "--out", str(t / "o")], r"cannot import 'no_such_module_xyz'"),
    "export-model-malformed": (lambda t: ["export", "--model", "deploy_lstm.demo", "--out", str(t / "o")], r"expected a model factory as MODULE:CALLABLE"),
    "export-model-not-callable": (lambda t: ["export", "--model", "deploy_lstm.demo:HORIZON", "--out", str(t / "o")], r"has no callable 'HORIZON'"),
    "export-model-returns-junk": (lambda t: ["export", "--model", "deploy_lstm.demo:demo_config", "--out", str(t / "o")], r"must return a deploy_lstm.ModelSpec or \(model, example_inputs\), got dict"),
    "export-model-without-lstm": (lambda t: ["export", "--model", "my_models_nolstm:make", "--out", str(t / "o")], r"Linear holds no deploy_lstm.LSTM or LSTMCell"),
    "export-demo-lengths": (lambda t: ["export", "--demo", "--lengths", "--out", str(t / "o")], r"--lengths is for a bare LSTM"),
    "validate-missing": (lambda t: ["validate", str(t / "nowhere")], r"is not a folder"),
    "validate-old-format": (lambda t: ["validate", str(_old_format_folder(t))], r"has no manifest.json.*before manifests; re-export"),
    "validate-tampered": (lambda t: ["validate", str(_tampered_folder(t))], r"model.ts does not match its checksum"),
    "validate-future-format": (lambda t: ["validate", str(_future_folder(t))], r"export format version 99; .* reads version 1"),
    "info-missing": (lambda t: ["info", str(t / "none.onnx")], r"does not exist"),
    "info-not-onnx": (lambda t: ["info", str(_write(t / "x.onnx", b"garbage"))], r"is not an ONNX model"),
    "info-folder-without-onnx": (lambda t: ["info", str(_ts_only_folder(t))], r"has no onnx artifact \(it has: torchscript, weights\)"),
    "bench-bad-config": (lambda t: ["bench", "--config", "foo", "--out", str(t / "b")], r"expected key=value"),
    "bench-unknown-key": (lambda t: ["bench", "--config", "input_size=4,hidden=8", "--out", str(t / "b")], r"unknown (LSTM config )?keys? \[?'hidden'"),
    "bench-not-a-folder": (lambda t: ["bench", str(t / "nowhere"), "--out", str(t / "b")], r"is not a folder"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
def test_every_subcommand_bad_arguments_exit_2_without_traceback(tmp_path, case, capsys, monkeypatch):
    """In-process (fast): an exception escaping main() would fail the test with its traceback."""
    make, message = BAD_ARGS[case]
    (tmp_path / "my_models_nolstm.py").write_text(
        "import torch\n\ndef make():\n    return torch.nn.Linear(4, 2), (torch.zeros(3, 4),)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = make(tmp_path)
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploy-lstm: error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "o").exists() and no_partial_files(tmp_path)


@pytest.mark.parametrize("command", ["serve", "triton"])
def test_serving_commands_without_the_serve_extra_say_what_to_install(tmp_path, command, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "deploy_lstm.serve", None)  # importing it fails, as without starlette & co
    argv = [command, str(tmp_path)] + (["--repo", str(tmp_path / "repo")] if command == "triton" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"deploy-lstm: error: 'deploy-lstm {command}' needs the serve extra ("), err
    assert err[0].endswith("pip install 'deploy-lstm[serve]'")


def test_bad_arguments_in_a_real_process_print_no_traceback(tmp_path):
    r = cli("validate", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"deploy-lstm: error: {tmp_path / 'nowhere'} is not a folder; expected one written by 'deploy-lstm export'"]


def test_artifacts_get_the_umask_permissions(tmp_path):
    """Every file of an export folder is created as open() would: 0644 under umask 022."""
    ckpt = tmp_path / "lstm.pt"
    torch.save(nn.LSTM(3, 4).state_dict(), ckpt)
    out = tmp_path / "o"
    r = subprocess.run(
        ["sh", "-c", f"umask 022 && {sys.executable} -m deploy_lstm.cli export {ckpt} --out {out} --quantize int8 --quiet"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert modes == {n: "0o644" for n in ("manifest.json", "model.onnx", "model.int8.onnx", "model.ts", "weights.safetensors")}


FACTORY = '''
from typing import Tuple

import torch
from torch import Tensor, nn
import deploy_lstm


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(30, 12)
        self.rnn = nn.LSTM(12, 12, 2)
        self.decoder = nn.Linear(12, 30)
        self.decoder.weight = self.encoder.weight

    def forward(self, input: Tensor, hidden: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        output, hidden = self.rnn(self.encoder(input), hidden)  # annotated: TorchScript scripts this
        return self.decoder(output), hidden


def make():
    torch.manual_seed(0)
    model = deploy_lstm.swap_lstms(LM().eval())
    state = (torch.zeros(2, 3, 12), torch.zeros(2, 3, 12))
    axes = {"input": {0: "sequence", 1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"},
            "logits": {0: "sequence", 1: "batch"}, "hn": {1: "batch"}, "cn": {1: "batch"}}
    return deploy_lstm.ModelSpec(model, (torch.randint(0, 30, (7, 3)), state), ["input", "h0", "c0"],
                                 ["logits", "hn", "cn"], axes)
'''


def test_export_a_whole_model_from_a_factory_and_checkpoint(tmp_path):
    (tmp_path / "my_models.py").write_text(FACTORY)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    torch.manual_seed(1)
    trained = {k: v + 0.01 * torch.randn_like(v) for k, v in _factory_state(tmp_path).items()}
    torch.save(trained, tmp_path / "trained.pt")
    out = tmp_path / "o"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "deploy_lstm.cli", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=600)

    r = run("export", "--model", "my_models:make", "--checkpoint", str(tmp_path / "trained.pt"), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["passed"] and {c["output"] for c in report["checks"]} == {"logits", "hn", "cn"}
    folder = deploy_lstm.load(out)
    assert folder.model == {"kind": "factory", "factory": "my_models:make"}
    assert torch.equal(folder.state_dict()["rnn.weight_hh_l1"], trained["rnn.weight_hh_l1"])  # the checkpoint's weights
    r = run("validate", str(out), "--quiet")
    assert r.returncode == 0 and r.stderr == ""
    r = run("bench", str(out), "--quick", "--out", str(tmp_path / "b"))  # a whole model: every artifact timed
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["model"] == {"kind": "factory", "factory": "my_models:make"}
    want = {"original (torch.nn LSTMs) eager", "deploy_lstm eager", "torchscript", "onnxruntime"}
    assert set(res["backends"]) == want
    assert all("median_ms" in case["results"][n] for case in res["cases"] for n in want), res["cases"]
    assert "| onnxruntime |" in r.stdout
    # the recommendation, recorded in the folder, and memory measured in fresh processes that rebuild the model
    assert deploy_lstm.load(out).recommended("cpp") == "torchscript" and res["recommendation"]["targets"]["server"]["artifact"] == "onnx"
    assert "## Recommendation" in r.stdout and "## Memory" in r.stdout
    assert {k: "added_bytes" in m for k, m in res["memory"]["sessions"].items()} == {"eager": True, "torchscript": True, "onnx": True}
    assert all("added_bytes" in m for m in res["memory"]["exports"].values()), res["memory"]["exports"]
    r = run("export", "--model", "my_models:make", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "nope.pt does not exist" in r.stderr and "Traceback" not in r.stderr


def _factory_state(tmp_path):  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_models_for_state", tmp_path / "my_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make().model.state_dict()


def test_export_bench_on_a_bare_lstm_with_lengths(tmp_path):
    """--bench times every artifact of the new folder, lengths input included."""
    ckpt = tmp_path / "lstm.pt"
    torch.save(nn.LSTM(4, 8, num_layers=2).state_dict(), ckpt)
    r = cli("export", str(ckpt), "--lengths", "--out", str(tmp_path / "o"), "--bench")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "o-bench" / "results.json").read_text())
    want = {"original (torch.nn LSTMs) eager", "deploy_lstm eager", "torchscript", "onnxruntime"}
    assert set(res["backends"]) == want
    assert all("median_ms" in case["results"][n] for case in res["cases"] for n in want), res["cases"]
    assert "| onnxruntime |" in r.stdout and "## Recommendation" in r.stdout
    assert deploy_lstm.load(tmp_path / "o").recommendation == res["recommendation"]


@pytest.mark.parametrize("cell", ["peephole", "layernorm", "cell_gated"])
def test_export_infers_a_variant_cell_from_the_checkpoint(tmp_path: Path, cell: str) -> None:
    """Parameter names tell the cell (weight_ph_*, ln_*, weight_ch_*); the folder says it and validates."""
    torch.manual_seed(0)
    model = deploy_lstm.LSTM(3, 5, num_layers=2, cell=cell)
    ckpt = tmp_path / "variant.pt"
    torch.save({"encoder." + k: v for k, v in model.state_dict().items()}, ckpt)
    args = ["export", str(ckpt), "--prefix", "encoder.", "--out", str(tmp_path / "out"), "--artifacts", "onnx,torchscript", "--quiet"]
    assert main(args) == 0
    folder = deploy_lstm.load(tmp_path / "out")
    assert folder.config is not None and folder.config.cell == cell
    rebuilt = folder.model_spec().model
    x = torch.randn(7, 2, 3)
    torch.testing.assert_close(rebuilt(x)[0], model(x)[0], atol=0, rtol=0)
    ops = graph_ops(onnx.load(str(folder.file("onnx"))))
    assert ("LSTM" in ops) == (cell == "peephole"), ops  # peepholes: the native node with P; others: Scan

"""``deploy-lstm``: from a checkpoint to validated deployment artifacts.

Thin: argument parsing and printing; the work is done by the library.
Exit codes: 0 success, 1 a validation check failed, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from . import __version__
from .contract import LSTMConfig
from .errors import ExportError, LSTMInputError
from .model import LSTM

ARTIFACTS = ("onnx", "torchscript", "aoti")
_KEY = re.compile(r"^(?P<prefix>.*?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)(?P<rev>_reverse)?$")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


# --- checkpoints --------------------------------------------------------------------------


def load_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """A flat {name: tensor} from ``torch.save`` (weights only) or ``.safetensors``."""
    if not path.exists():
        raise UsageError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise UsageError(f"checkpoint {path} is a directory; expected a .pt/.pth or .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise UsageError(f"checkpoint {path} is not a readable safetensors file: {e}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, IndexError, ...
        msg = str(e)
        code = re.search(r"unsupported GLOBAL ([\w.]+)", msg, re.IGNORECASE)
        if code:
            raise UsageError(
                f"refusing to load {path}: it is a pickle that carries code ({code.group(1)}), not just "
                "weights; save model.state_dict() (or a .safetensors file) instead"
            ) from None
        why = re.search(r"Unsupported operand \d+|invalid load key[^\n]*|failed finding central directory", msg)
        text = why.group(0) if why else (msg.splitlines()[0][:120] if msg else type(e).__name__)
        raise UsageError(f"checkpoint {path} is not a readable torch.save file ({text})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a common training-checkpoint wrapper
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(f"checkpoint {path} does not hold a state_dict (a dict of tensors); got {type(obj).__name__}")
    return dict(obj)


def lstm_from_state_dict(
    state: Dict[str, torch.Tensor], prefix: Optional[str], batch_first: bool, expect: Dict[str, object]
) -> LSTM:
    """Read the LSTM configuration from key names and shapes; build it and load the weights.

    ``expect`` holds configuration flags the user gave; each must agree with the weights.
    """
    prefixes = sorted({m["prefix"] for k in state if (m := _KEY.match(k)) and m["kind"] == "weight_ih" and m["layer"] == "0"})
    if prefix is None:
        if not prefixes:
            sample = ", ".join(list(state)[:5])
            raise UsageError(f"the checkpoint holds no LSTM: no key ends in 'weight_ih_l0' (keys: {sample}...)")
        if len(prefixes) > 1:
            raise UsageError(f"the checkpoint holds {len(prefixes)} LSTMs; pick one with --prefix, one of: {', '.join(repr(p) for p in prefixes)}")
        prefix = prefixes[0]
    elif prefix not in prefixes:
        known = ", ".join(repr(p) for p in prefixes) or "none"
        raise UsageError(f"--prefix {prefix!r} matches no LSTM in the checkpoint; LSTM prefixes found: {known}")
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and _KEY.match(k[len(prefix):])}
    w = sub["weight_ih_l0"]
    layers = 1 + max(int(_KEY.match(k)["layer"]) for k in sub)  # type: ignore[index]
    inferred = {
        "input_size": int(w.shape[1]),
        "hidden_size": int(w.shape[0]) // 4,
        "num_layers": layers,
        "bias": "bias_ih_l0" in sub,
        "bidirectional": "weight_ih_l0_reverse" in sub,
        "proj_size": int(sub["weight_hr_l0"].shape[0]) if "weight_hr_l0" in sub else 0,
    }
    for key, value in expect.items():
        if value is not None and inferred[key] != value:
            raise UsageError(f"--{key.replace('_', '-')} {value} contradicts the weights, which say {key}={inferred[key]}")
    model = LSTM(**inferred, batch_first=batch_first, dtype=w.dtype)
    try:
        model.load_state_dict(sub, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise UsageError(f"the weights under prefix {prefix!r} do not form one nn.LSTM: {first}") from None
    return model.eval()


# --- export -------------------------------------------------------------------------------


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def step(self, text: str):  # type: ignore[no-untyped-def]
        progress = self

        class _Step:
            def __enter__(self):  # type: ignore[no-untyped-def]
                self.t0 = time.perf_counter()
                if not progress.quiet:
                    print(f"• {text} ...", end="", file=sys.stderr, flush=True)

            def __exit__(self, exc_type, *_):  # type: ignore[no-untyped-def]
                if not progress.quiet:
                    status = f"done in {time.perf_counter() - self.t0:.1f}s" if exc_type is None else "failed"
                    print(f" {status}", file=sys.stderr, flush=True)

        return _Step()


def _demo_io(model) -> Tuple[Tuple[torch.Tensor, ...], Dict[str, Dict[int, str]]]:  # type: ignore[no-untyped-def]
    from .demo.forecaster import DYNAMIC_AXES

    lstm = model.lstm
    N, T = 3, 7
    state = torch.zeros(lstm.num_layers, N, lstm.hidden_size)
    return (torch.randn(N, T, 1), state, state.clone()), DYNAMIC_AXES


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot write under {parent}")


def cmd_export(args: argparse.Namespace) -> int:
    from .onnx_export import export_onnx
    from .runtime import validate
    from .torchscript import export_torchscript

    progress = Progress(args.quiet or args.json)
    out = Path(args.out)
    _prepare_out(out)
    artifacts = [a.strip() for a in args.artifacts.split(",") if a.strip()]
    bad = [a for a in artifacts if a not in ARTIFACTS]
    if bad or not artifacts:
        raise UsageError(f"--artifacts {args.artifacts!r}: expected a comma-separated subset of {', '.join(ARTIFACTS)}")
    if args.demo and args.checkpoint:
        raise UsageError("give either a CHECKPOINT or --demo, not both")
    if args.quantize and "onnx" not in artifacts:
        raise UsageError("--quantize int8 needs the onnx artifact")
    if args.demo and "aoti" in artifacts:
        raise UsageError("--artifacts aoti is for a bare LSTM checkpoint; the demo is a whole model")

    whole = None
    if args.demo:
        if args.lengths:
            raise UsageError("--lengths is for a bare LSTM checkpoint; the demo forecaster takes whole series")
        from .demo.forecaster import load_demo

        whole = load_demo()
        model = whole
        config: Dict[str, object] = {"kind": "demo-forecaster", "lstm": whole.lstm.config(), "model": whole.config()}
    else:
        if not args.checkpoint:
            raise UsageError("give a CHECKPOINT (a state_dict saved with torch.save, or .safetensors), or --demo")
        state = load_state_dict(Path(args.checkpoint))
        expect = {
            "input_size": args.input_size, "hidden_size": args.hidden_size, "num_layers": args.num_layers,
            "bidirectional": args.bidirectional, "proj_size": args.proj_size,
        }
        model = lstm_from_state_dict(state, args.prefix, args.batch_first, expect)
        config = {"kind": "lstm", "lstm": model.config()}
    config.update(
        exporter=args.exporter, opset=args.opset, torchscript=args.torchscript if "torchscript" in artifacts else None, lengths=bool(args.lengths), native_lstm=not args.no_native_lstm,
        artifacts=artifacts, deploy_lstm=__version__, torch=torch.__version__,
    )

    staging = Path(tempfile.mkdtemp(prefix=".deploy-lstm-", dir=_existing_parent(out)))
    try:
        files: List[str] = ["config.json", "weights.safetensors", "report.json"]
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staging / "weights.safetensors"))
        onnx_path = ts_path = None
        if "onnx" in artifacts:
            with progress.step(f"exporting model.onnx ({args.exporter} exporter)"):
                if whole is not None:
                    example, axes = _demo_io(whole)
                    from .demo.forecaster import INPUT_NAMES, OUTPUT_NAMES

                    onnx_path = export_onnx(
                        whole, staging / "model.onnx", example_inputs=example, input_names=list(INPUT_NAMES),
                        output_names=list(OUTPUT_NAMES), dynamic_axes=axes, exporter=args.exporter,
                        opset=args.opset, native_lstm=not args.no_native_lstm,
                    )
                else:
                    onnx_path = export_onnx(
                        model, staging / "model.onnx", lengths=args.lengths, exporter=args.exporter,
                        opset=args.opset, native_lstm=not args.no_native_lstm,
                    )
            files.append("model.onnx")
        if "torchscript" in artifacts:
            with progress.step(f"exporting model.ts (TorchScript, {args.torchscript})"):
                ts_path = export_torchscript(model, staging / "model.ts", fused=args.torchscript == "fused")
            files.append("model.ts")
        aoti_path = None
        if "aoti" in artifacts:
            from .aoti import export_aoti

            with progress.step("compiling model.pt2 (AOTInductor; about 30 s)"):
                aoti_path = export_aoti(model, staging / "model.pt2", lengths=args.lengths)
            files.append("model.pt2")
        extra = {}
        if args.quantize:
            from .quantize import quantize_int8

            with progress.step("quantizing model.int8.onnx (onnxruntime dynamic int8)"):
                quantize_int8(onnx_path, staging / "model.int8.onnx")
            files.append("model.int8.onnx")
            extra["onnxruntime-int8"] = (staging / "model.int8.onnx", args.int8_atol)
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        with progress.step("validating against the eager model and torch.nn.LSTM"):
            report = validate(model, onnx_path, ts_path, atol=args.atol, extra_onnx=extra, aoti_path=aoti_path)
        (staging / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for name in files:  # everything is ready: move it in
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _print_report(report, args)
    if args.demo and report.passed and not args.quiet and not args.json and "onnx" in artifacts:
        _demo_inference(out / "model.onnx")
    return 0 if report.passed else 1


def _existing_parent(out: Path) -> Path:
    p = out if out.exists() else out.parent
    while not p.exists():
        p = p.parent
    return p


def _print_report(report, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    if args.quiet:
        for c in report.failures():
            print(f"✗ {c.backend} vs {c.reference} {c.output}: max abs {c.max_abs:.2e} > {c.atol:.0e} at {c.worst_case}", file=sys.stderr)
        return
    print(report.table())
    verdict = "all checks passed" if report.passed else f"{len(report.failures())} check(s) FAILED"
    print(f"\n{verdict} over {len(report.cases)} shapes ({', '.join(report.cases)})")


def _demo_inference(onnx_path: Path) -> None:
    import onnxruntime as ort

    from .demo.forecaster import demo_config, demo_report, session_step

    print(f"\none inference through onnxruntime ({onnx_path}):")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    demo_report(session_step(session))
    t = demo_config()["training"]
    lo, hi = t["val_seeds"]
    print(
        f"over {hi - lo} held-out series (validation at training time): 12-step RMSE {t['val_rmse']:.3f}, "
        f"repeat-last {t['val_naive_rmse']:.3f}, best seasonal lag {t['val_seasonal_rmse']:.3f}"
    )


# --- validate and info --------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from safetensors.torch import load_file

    from .runtime import validate

    folder = Path(args.dir)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise UsageError(f"{folder} has no config.json; expected a folder written by 'deploy-lstm export'")
    try:
        config = json.loads(cfg_path.read_text())
        state = load_file(str(folder / "weights.safetensors"))
    except Exception as e:
        raise UsageError(f"cannot read the export in {folder}: {e}") from None
    if config.get("kind") == "demo-forecaster":
        from .demo.forecaster import Forecaster

        model: torch.nn.Module = Forecaster(**config["model"])
    else:
        model = LSTM(**LSTMConfig.from_dict(config["lstm"]).__dict__)
    model.load_state_dict(state, strict=True)
    onnx_path = folder / "model.onnx"
    ts_path = folder / "model.ts"
    extra = {}
    if (folder / "model.int8.onnx").is_file():
        extra["onnxruntime-int8"] = (folder / "model.int8.onnx", args.int8_atol)
    aoti_path = folder / "model.pt2"
    report = validate(
        model.eval(), onnx_path if onnx_path.is_file() else None, ts_path if ts_path.is_file() else None,
        atol=args.atol, extra_onnx=extra, aoti_path=aoti_path if aoti_path.is_file() else None,
    )
    _print_report(report, args)
    return 0 if report.passed else 1


def cmd_info(args: argparse.Namespace) -> int:
    import onnx

    from .onnx_export import graph_ops

    path = Path(args.model)
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise UsageError(f"{path} is not an ONNX model: {str(e).splitlines()[0]}") from None
    meta = {p.key: p.value for p in proto.metadata_props}

    def shape(vi) -> str:  # type: ignore[no-untyped-def]
        dims = [d.dim_param if d.HasField("dim_param") else str(d.dim_value) for d in vi.type.tensor_type.shape.dim]
        elem = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        return f"{vi.name}: {elem} [{', '.join(dims)}]"

    info = {
        "file": str(path),
        "opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
        "inputs": [shape(i) for i in proto.graph.input],
        "outputs": [shape(o) for o in proto.graph.output],
        "operators": graph_ops(proto),
        "metadata": meta,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{path}")
    print("  opset:     " + ", ".join(f"{d} {v}" for d, v in info["opset"].items()))
    for key in ("config", "version", "exporter", "lstm_ops"):
        full = f"deploy_lstm.{key}"
        if full in meta:
            print(f"  {key + ':':<10} {meta[full]}")
    if "torch.version" in meta:
        print(f"  torch:     {meta['torch.version']}")
    print("  inputs:")
    for s in info["inputs"]:
        print(f"    {s}")
    print("  outputs:")
    for s in info["outputs"]:
        print(f"    {s}")
    print("  operators: " + ", ".join(f"{k}×{v}" for k, v in sorted(info["operators"].items())))
    return 0


# --- the parser ---------------------------------------------------------------------------

EXAMPLES = {
    "export": """examples:
  deploy-lstm export --demo --out out/demo
  deploy-lstm export lstm.pt --out out/lstm --lengths
  deploy-lstm export model.pt --prefix encoder.rnn. --batch-first --out out/encoder
  deploy-lstm export lstm.safetensors --exporter torchscript --opset 17 --artifacts onnx --out out/
  deploy-lstm export lstm.pt --quantize int8 --out out/int8""",
    "validate": "example:\n  deploy-lstm validate out/lstm",
    "info": "example:\n  deploy-lstm info out/lstm/model.onnx",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy-lstm",
        description="Turn LSTM checkpoints into TorchScript and ONNX artifacts proven equal to torch.nn.LSTM.",
        epilog="run 'deploy-lstm COMMAND --help' for each command's options and examples",
    )
    parser.add_argument("--version", action="version", version=f"deploy-lstm {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("export", help="export a checkpoint (or the demo) to validated artifacts", epilog=EXAMPLES["export"], formatter_class=fmt)
    p.add_argument("checkpoint", nargs="?", help="state_dict of an nn.LSTM/deploy_lstm.LSTM (torch.save) or .safetensors")
    p.add_argument("--demo", action="store_true", help="export the shipped, trained demo forecaster instead")
    p.add_argument("--out", required=True, help="output folder (created; files are moved in only when all succeed)")
    p.add_argument("--prefix", help="key prefix of the LSTM inside a bigger model's state_dict, e.g. encoder.rnn.")
    p.add_argument("--batch-first", action="store_true", help="inputs are (batch, sequence, features); not readable from weights")
    p.add_argument("--lengths", action="store_true", help="add an int64 'lengths' (batch,) input for right-padded batches")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo", help="ONNX exporter (default: dynamo)")
    p.add_argument("--opset", type=int, help="ONNX opset (dynamo 18..23, torchscript 11..20)")
    p.add_argument("--artifacts", default="onnx,torchscript", help="comma-separated subset of onnx,torchscript,aoti (default: onnx,torchscript; aoti = AOTInductor model.pt2)")
    p.add_argument("--no-native-lstm", action="store_true", help="use Scan/Loop even where the ONNX LSTM op fits")
    p.add_argument("--torchscript", choices=("fused", "loop"), default="fused",
                   help="model.ts runs aten::lstm (fused, default: nn.LSTM's kernel) or the static time loop")
    p.add_argument("--quantize", choices=("int8",), help="also write model.int8.onnx (onnxruntime dynamic quantization)")
    p.add_argument("--atol", type=float, help="max abs error allowed (default 1e-5 float32, 1e-10 float64)")
    p.add_argument("--int8-atol", type=float, default=5e-2, help="max abs error allowed for the int8 model (default 5e-2)")
    for flag, kind in (("--input-size", int), ("--hidden-size", int), ("--num-layers", int), ("--proj-size", int)):
        p.add_argument(flag, type=kind, help="optional; must agree with the weights")
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None, help="optional; must agree with the weights")
    _output_flags(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("validate", help="re-run the validation of an export folder", epilog=EXAMPLES["validate"], formatter_class=fmt)
    p.add_argument("dir", help="a folder written by 'deploy-lstm export'")
    p.add_argument("--atol", type=float, help="max abs error allowed (default 1e-5 float32, 1e-10 float64)")
    p.add_argument("--int8-atol", type=float, default=5e-2, help="max abs error allowed for model.int8.onnx")
    _output_flags(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("info", help="show an ONNX file's configuration, inputs, outputs and operators", epilog=EXAMPLES["info"], formatter_class=fmt)
    p.add_argument("model", help="an .onnx file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    try:
        from . import bench
    except ImportError:  # the benchmark module is optional at import time
        bench = None  # type: ignore[assignment]
    if bench is not None and hasattr(bench, "add_arguments"):
        p = sub.add_parser("bench", help="benchmark the backends against torch.nn.LSTM", formatter_class=fmt)
        bench.add_arguments(p)
        p.set_defaults(func=bench.run)
    return parser


def _output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print the report as JSON for machines")
    g.add_argument("--quiet", action="store_true", help="print only errors")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        try:
            return int(args.func(args))
        except (UsageError, ExportError, LSTMInputError, FileNotFoundError) as e:
            print(f"deploy-lstm: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("deploy-lstm: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())

"""``deploy-lstm``: from a checkpoint or a model factory to validated deployment artifacts.

Thin: argument parsing and printing; the work is done by the library. Each subcommand is a
pair of small functions, ``add_COMMAND`` (its arguments) and ``run_COMMAND`` (the call).
Exit codes: 0 success, 1 a validation check failed, 2 bad input (one line on stderr,
no traceback: every ``DeployLSTMError``, and the OS's errors such as a full disk).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, Optional, Sequence, Tuple

import onnx
import torch

from deploy_lstm.bench import command as bench
from deploy_lstm.bench import recommend
from deploy_lstm.check.int8 import INT8_SHAPES, int8_error, int8_expectation
from deploy_lstm.check.folder import validate_folder
from deploy_lstm.check.validate import ValidationReport
from deploy_lstm.nn import jit
from deploy_lstm.errors import ConfigError, DeployLSTMError
from deploy_lstm.exporters.onnx import graph_ops
from deploy_lstm.formats import contract
from deploy_lstm.formats.checkpoint import load_checkpoint, lstm_from_state_dict
from deploy_lstm.formats.folder import load, load_model_spec
from deploy_lstm.pipeline import ARTIFACTS, export_folder
from deploy_lstm.runtime.folder import RUNNER_KINDS
from deploy_lstm.version import __version__
from deploy_lstm.formats import strict_json

DEMO = "deploy_lstm.demo:export_spec"
ATOL_HELP = "max abs error allowed (default 1e-5 float32, 1e-10 float64)"


# --- printing -------------------------------------------------------------------------------


def progress_steps(quiet: bool) -> Callable[[str], ContextManager[None]]:
    """``with step("exporting x"):`` prints "• exporting x ... done in 1.2s" on stderr, unless quiet."""

    @contextlib.contextmanager
    def step(text: str) -> Iterator[None]:
        t0 = time.perf_counter()
        if not quiet:
            print(f"• {text} ...", end="", file=sys.stderr, flush=True)
        ok = False
        try:
            yield
            ok = True
        finally:
            if not quiet:
                print(f" done in {time.perf_counter() - t0:.1f}s" if ok else " failed", file=sys.stderr, flush=True)

    return step


def int8_summary(folder: Any, report: ValidationReport) -> Optional[Dict[str, Any]]:
    """int8's error against float32 onnxruntime and whether it is expected to pay, for a folder with model.int8.onnx."""
    if not (folder.has("onnx-int8") and folder.has("onnx")):
        return None
    err = int8_error(folder.file("onnx"), folder.file("onnx-int8"), INT8_SHAPES)
    worth, advice = int8_expectation(folder.model_spec().model)
    atol = max((c.atol for c in report.checks if c.backend == "onnxruntime-int8"), default=None)
    shapes = [f"N={n} T={t}" for n, t in INT8_SHAPES]
    return {**{k: err[k] for k in ("max_abs", "mean_abs", "rel", "scale")}, "shapes": shapes, "atol": atol,
            "expected_worth_it": worth, "advice": advice}


def print_int8(summary: Optional[Dict[str, Any]]) -> None:
    if summary is None:
        return
    print(f"\nint8 vs float32 (onnxruntime, random inputs at {', '.join(summary['shapes'])}): max abs error "
          f"{summary['max_abs']:.1e} ({summary['rel']:.1%} of the output scale), mean {summary['mean_abs']:.1e}"
          + (f"; validated at atol {summary['atol']:.1e}" if summary["atol"] is not None else ""))
    print(f"int8 is {summary['advice']}")


def print_bf16(folder: Any) -> None:
    """Per bf16 artifact: its error against float32 and its speed against its float32 sibling, as recorded."""
    for kind in ("aoti-bf16", "torchscript-bf16"):
        if folder.has(kind):
            d = folder.artifacts[kind].details
            print(f"\n{folder.artifacts[kind].file} vs float32: max abs error {d['max_abs']:.1e}, mean {d['mean_abs']:.1e} "
                  f"(atol {d['atol']:.1e}); {d['speed_note']}")


def print_report(report: ValidationReport, args: argparse.Namespace, int8: Optional[Dict[str, Any]] = None) -> None:
    if args.json:
        print(strict_json.dumps({**report.to_dict(), **({"int8": int8} if int8 is not None else {})}, "the report", nonfinite="null", indent=2))
        return
    if args.quiet:
        for c in report.failures():
            print(f"✗ {c.backend} vs {c.reference} {c.output}: max abs {c.max_abs:.2e} > {c.atol:.0e} at {c.worst_case}", file=sys.stderr)
        return
    print(report.table())
    verdict = "all checks passed" if report.passed else f"{len(report.failures())} check(s) FAILED"
    print(f"\n{verdict} over {len(report.cases)} shapes ({', '.join(report.cases)})")
    print_int8(int8)


def add_output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print the report as JSON for machines")
    g.add_argument("--quiet", action="store_true", help="print only errors")


def add_command(sub: argparse._SubParsersAction, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its examples, laid out as written."""
    return sub.add_parser(name, help=summary, epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)


# --- export -----------------------------------------------------------------------------------


def add_export(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "export", "export a checkpoint or a model to a validated export folder", """examples:
  deploy-lstm export --demo --out out/demo
  deploy-lstm export lstm.pt --out out/lstm --lengths
  deploy-lstm export model.pt --prefix encoder.rnn. --batch-first --out out/encoder
  deploy-lstm export --model mypkg.models:make_tagger --checkpoint weights.pt --out out/tagger
  deploy-lstm export lstm.safetensors --exporter torchscript --opset 17 --artifacts onnx --out out/
  deploy-lstm export lstm.pt --quantize int8 --out out/int8
  deploy-lstm export lstm.pt --artifacts onnx,torchscript,aoti --precision bf16 --out out/bf16""")
    p.add_argument("checkpoint", nargs="?", help="state_dict (torch.save or .safetensors): of an nn.LSTM/deploy_lstm.LSTM, or weights for --model")
    p.add_argument("--model", metavar="MODULE:CALLABLE", help="a whole model: a callable returning a deploy_lstm.ModelSpec (or (model, example_inputs))")
    p.add_argument("--checkpoint", dest="checkpoint_file", metavar="FILE", help="the same as the CHECKPOINT argument (weights for --model, or an LSTM's state_dict)")
    p.add_argument("--demo", action="store_true", help=f"export the shipped, trained demo forecaster (= --model {DEMO})")
    p.add_argument("--out", required=True, help="output folder (created; files are moved in only when all succeed)")
    p.add_argument("--prefix", help="key prefix of the LSTM inside a bigger model's state_dict, e.g. encoder.rnn.")
    p.add_argument("--batch-first", action="store_true", help="inputs are (batch, sequence, features); not readable from weights")
    p.add_argument("--lengths", action="store_true", help="add an int64 'lengths' (batch,) input for right-padded batches")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo", help="ONNX exporter (default: dynamo)")
    p.add_argument("--opset", type=int, help="ONNX opset (dynamo 18..23, torchscript 11..20)")
    p.add_argument("--artifacts", default="onnx,torchscript", help=f"comma-separated subset of {','.join(ARTIFACTS)} (default: onnx,torchscript; aoti = AOTInductor model.pt2; executorch = model.pte)")
    p.add_argument("--pte-chunk", type=int, default=1, help="model.pte: time steps per call (default 1; a shorter remainder runs step by step)")
    p.add_argument("--pte-batch", type=int, default=1, help="model.pte: sequences per call (default 1)")
    p.add_argument("--no-native-lstm", action="store_true", help="use Scan/Loop even where the ONNX LSTM op fits")
    p.add_argument("--torchscript", choices=("fused", "loop"), default="fused",
                   help="model.ts runs aten::lstm (fused, default: nn.LSTM's kernel) or the static time loop")
    p.add_argument("--quantize", choices=("int8",), help="also write model.int8.onnx (onnxruntime dynamic quantization)")
    p.add_argument("--atol", type=float, help=ATOL_HELP)
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="bf16: also write model.bf16.pt2 / model.bf16.ts beside model.pt2 / model.ts (LSTMs in bfloat16, float32 in and out), timed and validated")
    p.add_argument("--bf16-atol", type=float, help="max abs error allowed for the bf16 artifacts (default: derived from the weights, see docs/guides/bf16.md)")
    p.add_argument("--force-bf16", action="store_true", help="write a bf16 artifact even where it measured slower than float32 at every batch size")
    p.add_argument("--int8-atol", type=float,
                   help="max abs error allowed for the int8 model (default: 4 x the weights' int8 step x sqrt(fan-in), measured; see README)")
    p.add_argument("--bench", action="store_true", help="then time every artifact against the eager model (results in OUT-bench/)")
    for flag in ("--input-size", "--hidden-size", "--num-layers", "--proj-size"):
        p.add_argument(flag, type=int, help="optional; must agree with the weights")
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None, help="optional; must agree with the weights")
    add_output_flags(p)
    p.set_defaults(func=run_export)


def export_source(args: argparse.Namespace) -> Tuple[Any, Optional[str]]:
    """(what `export` exports, its factory): the model spec of --model/--demo with --checkpoint's weights
    and "MODULE:CALLABLE", or the checkpoint's LSTM and None."""
    if args.checkpoint and args.checkpoint_file:
        raise ConfigError("give the checkpoint once: as CHECKPOINT or as --checkpoint FILE")
    checkpoint = args.checkpoint or args.checkpoint_file
    if args.demo and args.model:
        raise ConfigError("give either --demo or --model, not both")
    factory = DEMO if args.demo else args.model
    if factory is None:
        if not checkpoint:
            raise ConfigError("give a CHECKPOINT (a state_dict saved with torch.save, or .safetensors), --model or --demo")
        expect = {
            "input_size": args.input_size, "hidden_size": args.hidden_size, "num_layers": args.num_layers,
            "bidirectional": args.bidirectional, "proj_size": args.proj_size,
        }
        return lstm_from_state_dict(load_checkpoint(Path(checkpoint)), args.prefix, args.batch_first, expect), None
    if args.lengths:
        raise ConfigError("--lengths is for a bare LSTM checkpoint; a whole model takes its own inputs")
    model = load_model_spec(factory)
    if checkpoint:
        try:
            model.model.load_state_dict(load_checkpoint(Path(checkpoint)), strict=True)
        except RuntimeError as e:
            raise ConfigError(f"{checkpoint} does not fit the model of {factory}: {str(e).splitlines()[0]}") from None
    return model, factory


def run_export(args: argparse.Namespace) -> int:
    model, factory = export_source(args)
    artifacts = [a.strip() for a in args.artifacts.split(",") if a.strip()]
    folder, report = export_folder(
        model, args.out, factory=factory, artifacts=artifacts, exporter=args.exporter, opset=args.opset,
        lengths=args.lengths, native_lstm=not args.no_native_lstm, torchscript=args.torchscript,
        quantize=args.quantize, atol=args.atol, int8_atol=args.int8_atol,
        progress=progress_steps(args.quiet or args.json), pte_chunk=args.pte_chunk, pte_batch=args.pte_batch,
        precision=args.precision, bf16_atol=args.bf16_atol, force_bf16=args.force_bf16,
    )
    print_report(report, args, None if args.quiet else int8_summary(folder, report))
    if not args.quiet and not args.json:
        print_bf16(folder)
    if args.bench:
        res = bench.benchmark_model(folder)
        sections = [recommend.to_markdown(bench.record_recommendation(folder, res))]
        bench.write_model_results(res, folder.path.parent / f"{folder.path.name}-bench", sections=sections)
        if not args.quiet and not args.json:
            print("\n" + bench.model_markdown(res, sections))
    if not args.quiet and not args.json:
        print(f"wrote {folder.path}: " + ", ".join(a.file for a in folder.artifacts.values()) + ", manifest.json")
        if args.demo and folder.has("onnx"):
            print(f"forecast with it: python -m deploy_lstm.demo --onnx {folder.file('onnx')}")
    return 0 if report.passed else 1


# --- validate ---------------------------------------------------------------------------------


def add_validate(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "validate", "re-run the validation of an export folder", "example:\n  deploy-lstm validate out/lstm")
    p.add_argument("dir", help="a folder written by 'deploy-lstm export'")
    p.add_argument("--atol", type=float, help=ATOL_HELP)
    p.add_argument("--int8-atol", type=float, help="max abs error allowed for model.int8.onnx (default: as exported)")
    p.add_argument("--bf16-atol", type=float, help="max abs error allowed for the bf16 artifacts (default: as exported)")
    add_output_flags(p)
    p.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    folder = load(args.dir)
    report = validate_folder(folder, atol=args.atol, int8_atol=args.int8_atol, bf16_atol=args.bf16_atol)
    print_report(report, args, None if args.quiet else int8_summary(folder, report))
    return 0 if report.passed else 1


# --- info -------------------------------------------------------------------------------------


def add_info(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "info", "show an ONNX file's configuration, inputs, outputs and operators",
                    "examples:\n  deploy-lstm info out/lstm/model.onnx\n  deploy-lstm info out/lstm")
    p.add_argument("model", help="an .onnx file, or an export folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_info)


def onnx_info(path: Path) -> Dict[str, Any]:
    """File, opsets, inputs and outputs ("name: dtype [dims]"), operator counts and metadata of an ONNX file."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError, ValueError, ... for a file that is not a model
        raise ConfigError(f"{path} is not an ONNX model: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None

    def shape(vi) -> str:  # type: ignore[no-untyped-def]
        dims = [d.dim_param if d.HasField("dim_param") else str(d.dim_value) for d in vi.type.tensor_type.shape.dim]
        elem = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        return f"{vi.name}: {elem} [{', '.join(dims)}]"

    return {
        "file": str(path),
        "opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
        "inputs": [shape(i) for i in proto.graph.input],
        "outputs": [shape(o) for o in proto.graph.output],
        "operators": graph_ops(proto),
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }


def run_info(args: argparse.Namespace) -> int:
    path = Path(args.model)
    info = onnx_info(load(path).file("onnx") if path.is_dir() else path)
    if args.json:
        print(strict_json.dumps(info, "the folder info", nonfinite="null", indent=2))
        return 0
    print(info["file"])
    print("  opset:       " + ", ".join(f"{d} {v}" for d, v in info["opset"].items()))
    labels = {contract.META_VERSION: "deploy_lstm", contract.META_TORCH: "torch"}
    for key, value in sorted(info["metadata"].items()):
        if key != contract.META_IO:  # shown below as inputs/outputs
            label = labels.get(key, key.replace("deploy_lstm.", ""))
            print(f"  {label + ':':<12} {value}")
    for title in ("inputs", "outputs"):
        print(f"  {title}:")
        for s in info[title]:
            print(f"    {s}")
    print("  operators: " + ", ".join(f"{k}×{v}" for k, v in sorted(info["operators"].items())))
    return 0


# --- bench ------------------------------------------------------------------------------------


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "bench", "benchmark the backends against torch.nn.LSTM",
                    "examples:\n  deploy-lstm bench --quick --out /tmp/bench\n  deploy-lstm bench out/lstm")
    bench.add_arguments(p)
    p.set_defaults(func=bench.run)


# --- serve and triton: they need the [serve] extra ----------------------------------------------


@contextlib.contextmanager
def serve_extra(command: str) -> Iterator[None]:
    """Around the imports of a serving command: modules that need the [serve] extra (starlette, uvicorn,
    grpcio, tritonclient, prometheus_client) are imported when their command runs, so the others work
    without it, and a missing one is bad input (exit 2) that says what to install."""
    try:
        yield
    except ImportError as e:
        raise ConfigError(f"'deploy-lstm {command}' needs the serve extra ({e}); pip install 'deploy-lstm[serve]'") from None


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "serve", "serve an export folder or a repository of them over the v2 inference protocol (HTTP and gRPC, Triton/KServe clients)",
                    """examples:
  deploy-lstm serve out/lstm
  deploy-lstm serve out/lstm --host 0.0.0.0 --port 8000 --grpc-port 8001 --name lstm
  deploy-lstm serve out/lstm --max-batch 64 --max-delay-ms 5 --sequence-idle-s 300
  deploy-lstm serve repo/ --model-control-mode explicit --load-model en --load-model de
  deploy-lstm serve repo/ --artifact aoti""")
    p.add_argument("dir", help="a folder written by 'deploy-lstm export', or a repository of them: REPO/NAME/ or REPO/NAME/1, REPO/NAME/2, ...")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0 = no gRPC)")
    p.add_argument("--name", help="model name (default: the folder's name); the stateful model is NAME_stream")
    p.add_argument("--provider", choices=("cpu", "cuda"), default="cpu", help="onnxruntime execution provider (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads per model (default 0: onnxruntime's choice for a folder, 1 per model in a repository)")
    p.add_argument("--max-batch", type=int, default=32, help="rows per executed batch and per request (default 32)")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="while traffic is concurrent, how long a batch waits for more requests (default 2)")
    p.add_argument("--max-padding", type=float, default=0.5, help="padded steps allowed per real step in a batch (default 0.5)")
    p.add_argument("--max-sequence-length", type=int, default=10_000, help="time steps per request (default 10000)")
    p.add_argument("--max-sequences", type=int, default=1024, help="live streaming sequences (default 1024)")
    p.add_argument("--sequence-idle-s", type=float, default=60.0, help="drop a sequence idle this long (default 60)")
    p.add_argument("--max-request-bytes", type=int, default=64 << 20, help="largest request body, after inflating (default 64 MiB)")
    p.add_argument("--grace-s", type=float, default=10.0, help="on SIGTERM, how long to finish the requests in flight (default 10)")
    p.add_argument("--allow-nonfinite", action="store_true", help="accept NaN/inf in float inputs (refused by default)")
    p.add_argument("--artifact", choices=RUNNER_KINDS,
                   help="which artifact to serve (default: the repository's deploy-lstm-serve.json, else what "
                        "'deploy-lstm bench DIR' recommended for the server, else onnx)")
    p.add_argument("--model-control-mode", choices=("none", "explicit"), default="none",
                   help="as Triton's: none loads every model at start and refuses load/unload; explicit lets clients load and unload")
    p.add_argument("--load-model", action="append", default=[], metavar="NAME",
                   help="with explicit: a model to load at start (repeat it; '*' for all)")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    with serve_extra("serve"):
        from deploy_lstm.serve import model as served, process
    options = served.ServeOptions(
        name=args.name, provider=args.provider, max_batch=args.max_batch, max_delay_ms=args.max_delay_ms,
        max_padding=args.max_padding, max_sequence_length=args.max_sequence_length, max_sequences=args.max_sequences,
        sequence_idle_s=args.sequence_idle_s, threads=args.threads, allow_nonfinite=args.allow_nonfinite,
        artifact=args.artifact,
    )
    address = process.ServerAddress(
        host=args.host, port=args.port, grpc_port=args.grpc_port, max_request_bytes=args.max_request_bytes, grace_s=args.grace_s,
        model_control_mode=args.model_control_mode, load_models=tuple(args.load_model),
    )
    if args.load_model and args.model_control_mode != "explicit":
        raise ConfigError("--load-model applies with --model-control-mode explicit (none loads every model)")
    process.serve(Path(args.dir), options, address)
    return 0


def add_triton(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "triton", "write a Triton Inference Server model repository and a KServe manifest for an export folder or a repository of them",
                    """examples:
  deploy-lstm triton out/lstm --repo models
  deploy-lstm triton out/lstm --repo models --name lstm --storage-uri s3://bucket/models --overwrite
  deploy-lstm triton my-repo --repo models    # my-repo/NAME/ or my-repo/NAME/1, my-repo/NAME/2: every model and version""")
    p.add_argument("dir", help="a folder written by 'deploy-lstm export' (with model.onnx), or a repository of them as "
                   "'deploy-lstm serve' reads it: DIR/NAME/ or versions DIR/NAME/1, DIR/NAME/2, ...")
    p.add_argument("--repo", required=True, help="the model repository folder (created; other models in it are left alone)")
    p.add_argument("--name", help="model name of an export folder (default: the folder's name; a repository's models keep "
                   "their folder names); the stateful model is NAME_stream")
    p.add_argument("--max-batch", type=int, default=32, help="max_batch_size of both models (default 32)")
    p.add_argument("--max-delay-us", type=int, default=2000, help="max_queue_delay_microseconds of the batchers (default 2000)")
    p.add_argument("--sequence-idle-s", type=float, default=60.0, help="the stream model drops a sequence idle this long (default 60)")
    p.add_argument("--instances", type=int, default=1, help="model instances (instance_group count, default 1)")
    p.add_argument("--storage-uri", help="storageUri of the KServe manifest (default: the repository's file:// URI)")
    p.add_argument("--kserve-name", help="name of the KServe InferenceService (default: the repository folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace NAME and NAME_stream if they exist")
    p.set_defaults(func=run_triton)


def run_triton(args: argparse.Namespace) -> int:
    with serve_extra("triton"):
        from deploy_lstm.serve import repository
    settings = dict(max_batch=args.max_batch, max_queue_delay_us=args.max_delay_us, sequence_idle_us=int(args.sequence_idle_s * 1e6),
                    instances=args.instances, storage_uri=args.storage_uri, kserve_name=args.kserve_name, overwrite=args.overwrite)
    source = Path(args.dir)
    if (source / "manifest.json").is_file() or not source.is_dir():  # an export folder (load() says what is wrong)
        written = [repository.write_repository(load(args.dir), args.repo, name=args.name, **settings)]
    elif args.name is not None:
        raise ConfigError(f"--name names the model of one export folder; {source} is a repository, whose models keep their folder names")
    else:
        written = repository.write_model_repository(source, args.repo, **settings)
    for repo in written:
        versions = f"; versions {', '.join(repo.model.versions)}" if len(repo.model.versions) > 1 else ""
        print(f"wrote {repo.model.path} (dynamic batching, up to {args.max_batch} per batch{versions})")
        if repo.stream is not None:
            print(f"wrote {repo.stream.path} (sequence batching: Triton carries {', '.join(i for i, _ in repo.stream.states)})")
        else:
            print(f"no stream model for {repo.model.name}: {repo.stream_skipped}")
    print(f"wrote {written[0].kserve} (KServe InferenceService)\nserve it: tritonserver --model-repository {written[0].repo}")
    return 0


# --- the command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy-lstm",
        description="Turn LSTM checkpoints and models into TorchScript, ONNX and AOTInductor artifacts proven equal to torch.nn.LSTM.",
        epilog="run 'deploy-lstm COMMAND --help' for each command's options and examples",
    )
    parser.add_argument("--version", action="version", version=f"deploy-lstm {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (add_export, add_validate, add_info, add_bench, add_serve, add_triton):
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    # torch's TorchScript deprecation warnings are filtered at the library's own torch.jit calls
    # (nn.jit), and said once here in our words when the command wrote or loaded TorchScript
    with jit.quiet() as torchscript:
        try:
            return int(args.func(args))
        except (DeployLSTMError, OSError) as e:
            print(f"deploy-lstm: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("deploy-lstm: interrupted", file=sys.stderr)
            return 130
        finally:
            if torchscript and not getattr(args, "quiet", False):  # --quiet: errors only
                print(f"deploy-lstm: note: TorchScript (model.ts) is deprecated upstream; {jit.SUCCESSOR}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

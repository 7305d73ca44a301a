"""Which bf16 path is fastest for an LSTM on this CPU, against float32 eager ``nn.LSTM``.

    python benchmarks/bf16_speed.py                 # LSTM(256, 256, 2), T=100, N in {1, 32}, +proj 128
    python benchmarks/bf16_speed.py --quick         # tiny sizes, smoke run
    python benchmarks/bf16_speed.py --threads 1      # 1 thread: robust when other processes share the cores
    python benchmarks/bf16_speed.py --no-openvino    # without OpenVINO (it is not a dependency of the project)

Per shape, every backend gets the same float32 (x, h0, c0) unless its name says "bf16 in"
(then bf16 tensors made once, outside the timing):

* ``fp32 eager``: ``nn.LSTM`` float32 (the reference, ratio 1.00);
* ``bf16 eager, bf16 in``: ``nn.LSTM`` with bf16 weights called on bf16 tensors;
* ``bf16 eager, fp32 in``: the same with the casts at the boundary (x, h0, c0 to bf16, outputs back);
* ``aoti fp32``: the float32 ``.pt2`` of the project (``deploy_lstm::fused_lstm``);
* ``aoti bf16, fp32 in``: a bf16 model compiled with the casts inside the graph (float32 boundary);
* ``aoti bf16, bf16 in``: the same bf16 model compiled with a bf16 boundary;
* ``ts bf16, fp32 in``: ``torch.jit.script`` of bf16 ``nn.LSTM`` with the casts inside;
* ``openvino bf16``: OpenVINO CPU with ``INFERENCE_PRECISION_HINT=bf16`` (if importable: it is
  not a dependency; installed for the measurement with ``pip install --target DIR openvino``, ``--openvino-path DIR``);
* ``casts only``: the boundary casts alone (x, h0, c0 to bf16 and (y, hn, cn) back).

Timing as ``benchmarks/aoti_speed.py``: 2 threads, interleaved rounds, order rotated, 50 ms idle
before each timed block, median over every call.  Errors: max abs vs the float32 ``nn.LSTM``.
Writes speed.json and speed.md to benchmarks/results/bf16/ (or ``--out``).  Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aoti_speed import busy_jiffies, max_err, profile_top, summary, time_backends, wait_for_quiet  # noqa: E402

from deploy_lstm import LSTM  # noqa: E402
from deploy_lstm.exporters.standins import traceable  # noqa: E402
from deploy_lstm.nn import jit  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "bf16"
BF16 = torch.bfloat16
FULL = [
    ("L2 H256, N=1 T=100", dict(hidden_size=256, num_layers=2), 1, 100),
    ("L2 H256, N=32 T=100", dict(hidden_size=256, num_layers=2), 32, 100),
    ("L2 H256 P128, N=1 T=100", dict(hidden_size=256, num_layers=2, proj_size=128), 1, 100),
    ("L2 H256 P128, N=32 T=100", dict(hidden_size=256, num_layers=2, proj_size=128), 32, 100),
]
QUICK = [("L1 H16, N=2 T=8", dict(hidden_size=16), 2, 8), ("L2 H16 P8, N=3 T=8", dict(hidden_size=16, num_layers=2, proj_size=8), 3, 8)]
INPUT_SIZE = 256
UNAVAILABLE: Dict[str, str] = {}
#: the backends that are artifacts deploy-lstm writes (float32 in and out)
ARTIFACTS = ("aoti fp32", "aoti bf16, fp32 in", "ts bf16, fp32 in")  # what failed to build, filled by build()


class Boundary(nn.Module):
    """``inner`` (a bf16 LSTM taking ``(x, (h0, c0))``) behind a float32 or bf16 boundary."""

    def __init__(self, inner: nn.Module, cast: bool) -> None:
        super().__init__()
        self.inner, self.cast = inner, cast

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        if self.cast:
            y, (h, c) = self.inner(x.to(torch.bfloat16), (h0.to(torch.bfloat16), c0.to(torch.bfloat16)))
            return y.float(), h.float(), c.float()
        y, (h, c) = self.inner(x, (h0, c0))
        return y, h, c


def make_case(kwargs: Dict[str, Any], N: int, T: int, seed: int) -> Tuple[LSTM, nn.LSTM, Tuple[Tensor, Tensor, Tensor]]:
    torch.manual_seed(seed)
    model = LSTM(INPUT_SIZE, **kwargs).eval()
    ref = model.to_torch().eval()
    L, P = model.num_layers * model.num_directions, model.proj_size or model.hidden_size
    return model, ref, (torch.randn(T, N, INPUT_SIZE), torch.randn(L, N, P), torch.randn(L, N, model.hidden_size))


def compile_aoti(module: nn.Module, args: Tuple[Tensor, ...], path: Path) -> Callable[..., Any]:
    """AOTInductor package of ``module`` with dynamic T and N (export at T=7, N=3)."""
    T, N = torch.export.Dim("T", min=1), torch.export.Dim("N", min=1)
    small = (args[0][:7, :3].contiguous(), args[1][:, :3].contiguous(), args[2][:, :3].contiguous())
    if args[0].shape[1] < 3:
        small = (torch.randn(7, 3, *args[0].shape[2:], dtype=args[0].dtype),
                 torch.randn(args[1].shape[0], 3, args[1].shape[2], dtype=args[1].dtype),
                 torch.randn(args[2].shape[0], 3, args[2].shape[2], dtype=args[2].dtype))
    if not path.is_file():  # --work keeps the packages between runs
        program = torch.export.export(module, small, dynamic_shapes=({0: T, 1: N}, {1: N}, {1: N}))
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return torch._inductor.aoti_load_package(str(path))


def fused_copy(model: LSTM) -> nn.Module:
    return traceable(model, "scan", native_lstm=False, fused=True)[0].eval()


def openvino_fn(ref: nn.LSTM, args: Tuple[Tensor, ...]) -> Callable[[], Any]:
    import openvino as ov  # not a dependency: pip install openvino (or --openvino-path DIR of pip install --target DIR)

    model = ov.convert_model(Boundary(ref, cast=False), example_input=args)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": torch.get_num_threads()})
    req = compiled.create_infer_request()
    feeds = [a.numpy() for a in args]
    return lambda: req.infer(feeds)


def build(i: int, kwargs: Dict[str, Any], N: int, T: int, work: Path, extras: Sequence[str]) -> Tuple[Dict[str, Callable[[], Any]], Dict[str, Callable[[], Any]]]:
    """(timed callables, callables whose outputs are compared with float32 nn.LSTM)."""
    model, ref, args = make_case(kwargs, N, T, seed=i)
    x, h0, c0 = args
    bref = model.to_torch().eval().to(BF16)
    bargs = tuple(a.to(BF16) for a in args)
    bmodel = LSTM.from_torch(bref).eval()
    aoti32 = compile_aoti(Boundary(fused_copy(model), cast=False), args, work / f"c{i}-fp32.pt2")
    aoti_cast = compile_aoti(Boundary(fused_copy(bmodel), cast=True), args, work / f"c{i}-bf16-cast.pt2")
    aoti_bf = compile_aoti(Boundary(fused_copy(bmodel), cast=False), bargs, work / f"c{i}-bf16.pt2")
    with jit.quiet():
        ts = jit.script(Boundary(bref, cast=True))
    eager_cast = Boundary(bref, cast=True)
    xb = bargs

    def casts() -> Any:
        xs = [a.to(BF16) for a in args]
        return [a.float() for a in xs]

    fns: Dict[str, Callable[[], Any]] = {
        "fp32 eager": lambda: ref(x, (h0, c0)),
        "bf16 eager, bf16 in": lambda: bref(xb[0], (xb[1], xb[2])),
        "bf16 eager, fp32 in": lambda: eager_cast(x, h0, c0),
        "aoti fp32": lambda: aoti32(x, h0, c0),
        "aoti bf16, fp32 in": lambda: aoti_cast(x, h0, c0),
        "aoti bf16, bf16 in": lambda: aoti_bf(*xb),
        "ts bf16, fp32 in": lambda: ts(x, h0, c0),
        "casts only": casts,
    }
    outs: Dict[str, Callable[[], Any]] = {
        "bf16 eager, bf16 in": lambda: [o.float() for o in Boundary(bref, cast=False)(*xb)],
        "aoti bf16, fp32 in": lambda: aoti_cast(x, h0, c0),
        "aoti bf16, bf16 in": lambda: [o.float() for o in aoti_bf(*xb)],
        "ts bf16, fp32 in": lambda: ts(x, h0, c0),
    }
    if "openvino" in extras:
        try:
            ov = openvino_fn(ref, args)
            fns["openvino bf16"] = ov
            outs["openvino bf16"] = lambda: [torch.from_numpy(v) for v in ov().to_tuple()]
        except Exception as e:  # noqa: BLE001 -- reported, not fatal
            why = str(e).splitlines()
            reason = next((line for line in why if "Unexpected length" in line), why[0] if why else type(e).__name__)
            UNAVAILABLE[f"openvino bf16 ({kwargs})"] = f"{type(e).__name__}: {reason.strip()}"
            print(f"openvino: {type(e).__name__}: {e}", flush=True)
    return fns, outs


def run(cases: List[Tuple[str, Dict[str, Any], int, int]], rounds: int, max_load: float, work: Path,
        extras: Sequence[str], profile: bool, threads: int = 2) -> Dict[str, Any]:
    torch.set_num_threads(threads)
    torch._inductor.config.compile_threads = 1
    res: Dict[str, Any] = {"torch": torch.__version__, "threads": threads, "rounds": rounds, "cases": [],
                           "unavailable": dict(NOT_MEASURED)}
    built = []
    for i, (name, kwargs, N, T) in enumerate(cases):
        built.append(build(i, kwargs, N, T, work, extras))
        print(f"built {name}", flush=True)
    wait_for_quiet(max_load)
    res["loadavg"] = os.getloadavg()
    for i, (name, kwargs, N, T) in enumerate(cases):
        fns, outs = built[i]
        _, ref, (x, h0, c0) = make_case(kwargs, N, T, seed=i)
        with torch.inference_mode():
            y, (h, c) = ref(x, (h0, c0))
            errs = {b: max_err(f(), (y, h, c)) for b, f in outs.items()}
            busy0, own0 = busy_jiffies()
            times = time_backends(fns, rounds)
            prof = {b: profile_top(fns[b]) for b in ("bf16 eager, bf16 in", "aoti bf16, fp32 in")} if profile else None
        stats = {b: {**summary(t), "min_ms": min(t)} for b, t in times.items()}
        base, best = stats["fp32 eager"]["median_ms"], stats["fp32 eager"]["min_ms"]
        for s in stats.values():
            s["ratio"], s["ratio_min"] = s["median_ms"] / base, s["min_ms"] / best
        case = {"name": name, "config": kwargs, "N": N, "T": T, "backends": stats, "max_abs_err_vs_fp32": errs}
        if prof:
            case["profile"] = prof
        res["cases"].append(case)
        print(f"{name}: " + ", ".join(f"{b} {s['median_ms']:.2f} ms ({s['ratio']:.2f}x; min {s['min_ms']:.2f} = {s['ratio_min']:.2f}x)"
                                      for b, s in stats.items()), flush=True)
        print("   errors: " + ", ".join(f"{b} {e:.1e}" for b, e in errs.items()), flush=True)
    return res


NOT_MEASURED = [
    ("ExecuTorch (XNNPACK) bf16", "no .pte: the fused op (deploy_lstm::fused_lstm) has no ExecuTorch kernel, and XNNPACK "
     "delegates float32 addmm only (see NOTES, ExecuTorch); a bf16 LSTM has no fast path there"),
    ("onnxruntime bf16", "no bf16 LSTM kernel on the CPU (issue 22)"),
]


def to_markdown(res: Dict[str, Any]) -> str:
    """The cases as a table: median ms (ratio to float32 eager nn.LSTM) [ratio of the fastest calls]."""
    names = list(res["cases"][0]["backends"])
    load = ", ".join(f"{v:.2f}" for v in res["loadavg"])
    lines = [
        "# bf16 paths for an LSTM on this CPU", "",
        f"`nn.LSTM`-shaped `deploy_lstm.LSTM(input_size={INPUT_SIZE}, ...)`, T=100; torch {res['torch']}, "
        f"{res['threads']} thread(s); `python benchmarks/bf16_speed.py --threads {res['threads']}`.",
        f"Method: {res['rounds']} interleaved rounds, order rotated, 50 ms idle before each timed block (about 40 ms of calls); "
        f"median over every call. 1-min load average at the start: {load} (other processes on the 2 cores).", "",
        "Cells: median ms (ratio to `fp32 eager` = float32 `nn.LSTM`) [ratio of the fastest calls, less sensitive to the "
        "other processes]. `fp32 in`: the artifact takes and returns float32 and casts inside (what deploy-lstm "
        "writes); `bf16 in`: bf16 tensors in and out. `casts only`: the boundary casts alone.", "",
        "| config, shape | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for c in res["cases"]:
        cells = [f"{s['median_ms']:.2f} ({s['ratio']:.2f}x) [{s['ratio_min']:.2f}x]" if (s := c["backends"].get(n)) else "n/a"
                 for n in names]
        lines.append(f"| {c['name']} | " + " | ".join(cells) + " |")
    lines += ["", "Max abs error against float32 `nn.LSTM` (every output, the case's inputs):", "",
              "| config, shape | " + " | ".join(res["cases"][0]["max_abs_err_vs_fp32"]) + " |",
              "|---" * (len(res["cases"][0]["max_abs_err_vs_fp32"]) + 1) + "|"]
    for c in res["cases"]:
        errs = c["max_abs_err_vs_fp32"]
        lines.append(f"| {c['name']} | " + " | ".join(f"{errs[n]:.1e}" if n in errs else "n/a"
                                                      for n in res["cases"][0]["max_abs_err_vs_fp32"]) + " |")
    lines += ["", "Best artifact per shape, among those deploy-lstm writes (float32 boundary), by median:", "",
              "| config, shape | fastest artifact | its ratio to fp32 eager | fastest bf16 artifact | its ratio | bf16 <= 0.7x? |",
              "|---|---|---|---|---|---|"]
    for c in res["cases"]:
        b = c["backends"]
        written = [n for n in ARTIFACTS if n in b]
        best = min(written, key=lambda n: b[n]["median_ms"])
        bf16 = min((n for n in written if "bf16" in n), key=lambda n: b[n]["median_ms"])
        lines.append(f"| {c['name']} | {best} | {b[best]['ratio']:.2f}x | {bf16} | {b[bf16]['ratio']:.2f}x | "
                     f"{'yes' if b[bf16]['ratio'] <= 0.7 else 'no'} |")
    lines += ["", "Only torch's artifacts are timed here; with a projection onnxruntime's float32 `model.onnx` beats them all "
              "(the main benchmark: `benchmarks/results/results.md`), and onnxruntime has no bf16 LSTM kernel."]
    if res.get("unavailable"):
        lines += ["", "Not measured:", ""] + [f"- {n}: {why}" for n, why in res["unavailable"].items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-openvino", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--max-load", type=float, default=2.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--openvino-path", type=Path, default=None, help="a pip --target folder holding openvino")
    parser.add_argument("--work", type=Path, default=None, help="keep the compiled packages here (reused when present)")
    parser.add_argument("--render", type=Path, default=None, help="only write speed.md from this speed.json")
    args = parser.parse_args(argv)
    if args.render is not None:
        (args.out / "speed.md").write_text(to_markdown(json.loads(args.render.read_text())))
        return 0
    extras = [] if args.no_openvino else ["openvino"]
    if args.openvino_path:
        sys.path.append(str(args.openvino_path))
    with tempfile.TemporaryDirectory(prefix="bf16_speed-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        res = run(QUICK if args.quick else FULL, 2 if args.quick else args.rounds, args.max_load, work, extras, args.profile, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    res["unavailable"].update(UNAVAILABLE)
    (args.out / "speed.json").write_text(json.dumps(res, indent=2) + "\n")
    md = to_markdown(res)
    (args.out / "speed.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrating the bf16 tolerance rule (deploy_lstm.check.tolerance.bf16_tolerance) on many models.

For each model (sizes, layers, projection, bidirectional, weight scales, variant cells, and the trained
demo forecaster's LSTM) and each sequence length T, the bf16 model the exporters write
(``deploy_lstm.exporters.bf16.with_bf16``: each LSTM in bfloat16 behind a float32 boundary, aten::lstm
where the cell has it, the kernel model.bf16.pt2 and model.bf16.ts run) is compared with the float32
model on standard-normal inputs and states (batch 8).  The ratio

    max |bf16 - float32| / (bf16_step(model) x min(T, BF16_SATURATION)^(1/4))

is what BF16_ATOL_FACTOR must cover.  Writes benchmarks/results/bf16/tolerance.{md,json}.

    python benchmarks/bf16_tolerance.py        # ~1-2 min on 2 cores
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import torch

from deploy_lstm.check.tolerance import BF16_ATOL_FACTOR, BF16_RULE, BF16_SATURATION, bf16_step, bf16_tolerance
from deploy_lstm.exporters.bf16 import with_bf16
from deploy_lstm.exporters.standins import with_fused
from deploy_lstm.nn.lstm import LSTM

OUT = Path(__file__).parent / "results" / "bf16"
SEQUENCES = (1, 4, 16, 50, 200, 1000)
#: validation's longest sequence (check.validate.DEFAULT_CASES): the tolerance an export records
VALIDATED = 50
BATCH = 8

#: (name, constructor arguments, weight scale)
MODELS: List[tuple] = [
    (f"LSTM({i}, {h}, {layers}{', proj ' + str(p) if p else ''}{', bidir' if d else ''}{', ' + cell if cell != 'lstm' else ''}) x{scale:g}",
     dict(input_size=i, hidden_size=h, num_layers=layers, proj_size=p, bidirectional=d, cell=cell), scale)
    for (i, h, layers, p, d, cell) in [
        (8, 16, 1, 0, False, "lstm"), (16, 32, 2, 0, False, "lstm"), (8, 16, 3, 0, False, "lstm"),
        (64, 64, 2, 0, True, "lstm"), (256, 256, 2, 0, False, "lstm"), (64, 512, 1, 0, False, "lstm"),
        (32, 128, 2, 32, False, "lstm"), (256, 512, 1, 128, True, "lstm"), (16, 32, 2, 0, False, "peephole"),
    ]
    for scale in (0.5, 1.0, 3.0)
]


def measure(model: torch.nn.Module, seed: int = 0) -> List[Dict[str, Any]]:
    """Per T: the max abs error of the bf16 model against float32 over output, h_n and c_n."""
    bf16 = with_bf16(model, lambda m: with_fused(m, m.cell == "lstm")).eval()
    lstm = next(m for m in model.modules() if isinstance(m, LSTM))
    g = torch.Generator().manual_seed(seed)
    D = 2 if lstm.bidirectional else 1
    rows = []
    for T in SEQUENCES:
        x = torch.randn(T, BATCH, lstm.input_size, generator=g)
        x = x.transpose(0, 1).contiguous() if lstm.batch_first else x
        h0 = torch.randn(lstm.num_layers * D, BATCH, lstm.proj_size or lstm.hidden_size, generator=g)
        c0 = torch.randn(lstm.num_layers * D, BATCH, lstm.hidden_size, generator=g)
        with torch.no_grad():
            a, (ah, ac) = model(x, (h0, c0))
            b, (bh, bc) = bf16(x, (h0, c0))
        err = max(float((a - b).abs().max()), float((ah - bh).abs().max()), float((ac - bc).abs().max()))
        rows.append({"sequence": T, "max_abs": err})
    return rows


def main() -> int:
    torch.manual_seed(0)
    models = []
    for name, kwargs, scale in MODELS:
        m = LSTM(**kwargs).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(scale)
        models.append((name, m))
    from deploy_lstm.demo.forecaster import load_demo  # the trained model: its forget gates carry state further

    demo = load_demo()
    models.append(("demo forecaster (trained) LSTM", next(m for m in demo.modules() if isinstance(m, LSTM)).eval()))
    results = []
    for name, m in models:
        step = bf16_step(m)
        for row in measure(m):
            ratio = row["max_abs"] / (step * min(row["sequence"], BF16_SATURATION) ** 0.25)
            results.append({"model": name, "sequence": row["sequence"], "max_abs": row["max_abs"], "bf16_step": step, "ratio": ratio,
                            "of_recorded_atol": row["max_abs"] / bf16_tolerance(m, VALIDATED)})
        print(name, " ".join(f"T={r['sequence']}:{r['ratio']:.2f}" for r in results[-len(SEQUENCES):]), file=sys.stderr)
    worst = max(r["ratio"] for r in results)
    worst_validated = max(r["of_recorded_atol"] for r in results if r["sequence"] <= VALIDATED)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tolerance.json").write_text(json.dumps(
        {"rule": BF16_RULE, "factor": BF16_ATOL_FACTOR, "saturation": BF16_SATURATION, "worst_ratio": worst,
         "worst_of_recorded_atol_up_to_validated_T": worst_validated, "batch": BATCH, "torch": torch.__version__, "results": results}, indent=1) + "\n")
    lines = [
        f"Max error of bf16 against float32 / (bf16_step x min(T, {BF16_SATURATION})^(1/4)), batch {BATCH}, standard-normal "
        f"inputs and states, torch {torch.__version__} (`python benchmarks/bf16_tolerance.py`). "
        f"The rule's factor is {BF16_ATOL_FACTOR:g}; the worst ratio measured is **{worst:.2f}**, at T=1, where the rounding "
        f"of a random standard-normal h0/c0 dominates. An export records the tolerance at validation's longest sequence "
        f"(T={VALIDATED}) and validates every case (T=1 to {VALIDATED}) with it: the worst error up to T={VALIDATED} is "
        f"**{worst_validated:.2f}** of that recorded tolerance (last column).",
        "",
        "| model | bf16_step | " + " | ".join(f"T={T}" for T in SEQUENCES) + f" | worst T<={VALIDATED} / recorded atol |",
        "|---|---|" + "---|" * len(SEQUENCES) + "---|",
    ]
    for i in range(0, len(results), len(SEQUENCES)):
        group = results[i:i + len(SEQUENCES)]
        recorded = max(r["of_recorded_atol"] for r in group if r["sequence"] <= VALIDATED)
        lines.append(f"| {group[0]['model']} | {group[0]['bf16_step']:.2e} | " + " | ".join(f"{r['ratio']:.2f}" for r in group)
                     + f" | {recorded:.2f} |")
    (OUT / "tolerance.md").write_text("\n".join(lines) + "\n")
    print(f"worst ratio {worst:.2f}; wrote {OUT / 'tolerance.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

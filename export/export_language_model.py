#!/usr/bin/env python
"""Export PyTorch's word-level LSTM language model (tied weights) and generate with onnxruntime.

Copy and adapt:

    python export/export_language_model.py --out out/lm

1. the model of pytorch/examples word_language_model (embedding -> nn.LSTM -> linear decoder whose
   weight is tied to the embedding), ``forward(input, hidden)`` with ``hidden = (h0, c0)``;
2. ``deploy_lstm.swap_lstms`` makes it exportable (the tie is kept);
3. ONNX (both exporters) and TorchScript, each validated against the original model at other shapes;
4. a few generation steps in onnxruntime, carrying the state between calls, equal to the eager model's.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

import deploy_lstm

INPUT_NAMES = ["input", "h0", "c0"]
OUTPUT_NAMES = ["logits", "hn", "cn"]
DYNAMIC_AXES = {
    "input": {0: "sequence", 1: "batch"},  # (T, N) token ids
    "h0": {1: "batch"},  # (num_layers, N, nhid)
    "c0": {1: "batch"},
    "logits": {0: "sequence", 1: "batch"},  # (T, N, ntoken)
    "hn": {1: "batch"},
    "cn": {1: "batch"},
}


class RNNModel(nn.Module):
    """Your model: pytorch/examples' word language model, LSTM flavour (replace with your own)."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.2, tie_weights: bool = True) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            if nhid != ninp:
                raise ValueError("tied weights need nhid == ninp")
            self.decoder.weight = self.encoder.weight
        self.nlayers, self.nhid = nlayers, nhid

    def forward(self, input: Tensor, hidden: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        emb = self.drop(self.encoder(input))  # (T, N, ninp)
        output, hidden = self.rnn(emb, hidden)  # (T, N, nhid)
        return self.decoder(self.drop(output)), hidden  # (T, N, ntoken)

    def init_hidden(self, bsz: int) -> Tuple[Tensor, Tensor]:
        w = self.encoder.weight
        return w.new_zeros(self.nlayers, bsz, self.nhid), w.new_zeros(self.nlayers, bsz, self.nhid)


def generate(step, prompt: List[int], steps: int) -> List[int]:  # type: ignore[no-untyped-def]
    """Greedy generation: the prompt in one call, then one token per call, the state carried.

    ``step(tokens (T, 1), state or None) -> (logits (T, 1, V), state)``.
    """
    logits, state = step(np.array(prompt, dtype=np.int64)[:, None], None)
    tokens = []
    for _ in range(steps):
        tokens.append(int(np.argmax(logits[-1, 0])))
        logits, state = step(np.array([[tokens[-1]]], dtype=np.int64), state)
    return tokens


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/lm", help="folder for lm-dynamo.onnx, lm-torchscript.onnx, lm.ts")
    parser.add_argument("--ntoken", type=int, default=100)
    parser.add_argument("--nhid", type=int, default=32, help="hidden size = embedding size (tied weights)")
    parser.add_argument("--nlayers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="tokens to generate")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    original = RNNModel(args.ntoken, args.nhid, args.nhid, args.nlayers).eval()  # or load your checkpoint
    model = deploy_lstm.swap_lstms(copy.deepcopy(original))
    assert model.decoder.weight is model.encoder.weight, "the tie survives the swap"

    example = (torch.randint(0, args.ntoken, (7, 3)), model.init_hidden(3))  # (input, (h0, c0))
    call = dict(example_inputs=example, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, dynamic_axes=DYNAMIC_AXES)
    worst = 0.0
    for exporter in ("dynamo", "torchscript"):
        path = deploy_lstm.export_onnx(model, out / f"lm-{exporter}.onnx", exporter=exporter, **call)
        report = deploy_lstm.validate(model, path, devices=("cpu",), **call)
        print(f"{path}: {'passed' if report.passed else 'FAILED'}")
        worst = max([worst] + [c.max_abs for c in report.checks if c.reference == "torch.nn.LSTM"])
        if not report.passed:
            print(report.table())
            return 1
    ts = deploy_lstm.export_torchscript(model, out / "lm.ts")
    report = deploy_lstm.validate(model, torchscript_path=ts, **call)
    print(f"{ts}: {'passed' if report.passed else 'FAILED'}")
    print(f"max abs error against the original nn.LSTM model: {worst:.2e}")

    # Generation: one token per call, the state carried from call to call.
    session = deploy_lstm.OnnxLSTM(out / "lm-dynamo.onnx")

    def onnx_step(token, state):  # type: ignore[no-untyped-def]
        h, c = state if state is not None else (np.zeros((args.nlayers, 1, args.nhid), np.float32),) * 2
        got = session.run({"input": token, "h0": h, "c0": c})
        return got["logits"], (got["hn"], got["cn"])

    def eager_step(token, state):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            logits, state = original(torch.from_numpy(token), state if state is not None else original.init_hidden(1))
        return logits.numpy(), state

    prompt = [3, 14, 15, 92, 65]
    ours, theirs = generate(onnx_step, prompt, args.steps), generate(eager_step, prompt, args.steps)
    print(f"generated (onnxruntime): {ours}\ngenerated (eager nn.LSTM): {theirs}")
    return 0 if ours == theirs and report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())

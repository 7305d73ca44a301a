#!/usr/bin/env python
"""Export a whole model that contains torch.nn.LSTM to model.onnx (copy and adapt).

    python export/export_whole_model_onnx.py --out out/

1. build (or load) your model, which uses torch.nn.LSTM;
2. deploy_lstm.swap_lstms(model) swaps in the exportable drop-in, weights kept;
3. deploy_lstm.export_onnx(...) writes model.onnx with dynamic batch and sequence;
4. onnxruntime runs it at other shapes and it is compared with the original model.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

import deploy_lstm


class Tagger(nn.Module):
    """Your model: embedding -> nn.LSTM -> linear head (replace with your own)."""

    def __init__(self, vocab: int = 100, embed: int = 32, hidden: int = 64, tags: int = 9) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(tokens))  # (N, T, 2H)
        return self.head(out)  # (N, T, tags)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".", help="folder for model.onnx")
    parser.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo")
    args = parser.parse_args()

    torch.manual_seed(0)
    original = Tagger().eval()  # or: model.load_state_dict(torch.load("ckpt.pt", weights_only=True))
    model = deploy_lstm.swap_lstms(copy.deepcopy(original))

    path = deploy_lstm.export_onnx(
        model,
        Path(args.out) / "model.onnx",
        example_inputs=(torch.randint(0, 100, (3, 7)),),
        input_names=["tokens"],
        output_names=["logits"],
        dynamic_axes={"tokens": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}},
        exporter=args.exporter,
    )
    session = deploy_lstm.OnnxLSTM(path)
    worst = 0.0
    for batch, seq in ((1, 1), (2, 25), (5, 60)):  # shapes other than the export example
        tokens = torch.randint(0, 100, (batch, seq))
        got = session.run({"tokens": tokens.numpy()})["logits"]
        with torch.no_grad():
            want = original(tokens).numpy()
        worst = max(worst, float(np.abs(got - want).max()))
    print(f"wrote {path}; onnxruntime vs the original nn.LSTM model: max abs error {worst:.2e}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())

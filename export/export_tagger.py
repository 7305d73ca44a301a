#!/usr/bin/env python
"""Export a tagger (embedding -> bidirectional nn.LSTM over a padded batch -> linear head).

Copy and adapt:

    python export/export_tagger.py --out out/tagger

1. your model, written for ``torch.nn.LSTM`` with packed sequences;
2. ``deploy_lstm.swap_lstms(model)`` swaps in the exportable drop-in, weights kept; the
   packed call becomes ``lstm(x, lengths=lengths)`` (values past a length, whatever
   they hold, never reach the result);
3. ``deploy_lstm.export_onnx`` writes ``tagger-<exporter>.onnx`` with dynamic batch and
   sequence, for both exporters;
4. ``deploy_lstm.validate`` runs them at other shapes and compares the logits with the
   original ``nn.LSTM`` model.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

import deploy_lstm


class Tagger(nn.Module):
    """Your model (replace with your own)."""

    def __init__(self, vocab: int = 100, embed: int = 32, hidden: int = 64, tags: int = 9) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, tags)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        x = self.embed(tokens)  # (N, T, embed)
        if isinstance(self.rnn, deploy_lstm.LSTM):
            out, _ = self.rnn(x, lengths=lengths)  # (N, T, 2H), zeros past each length
        else:  # the original model: packed sequences
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        return self.head(out)  # (N, T, tags)


CALL = dict(
    input_names=["tokens", "lengths"],
    output_names=["logits"],
    dynamic_axes={"tokens": {0: "batch", 1: "sequence"}, "lengths": {0: "batch"}, "logits": {0: "batch", 1: "sequence"}},
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/tagger", help="folder for tagger-dynamo.onnx and tagger-torchscript.onnx")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    original = Tagger().eval()  # or: original.load_state_dict(torch.load("ckpt.pt", weights_only=True))
    model = deploy_lstm.swap_lstms(copy.deepcopy(original))
    example = (torch.randint(0, 100, (3, 7)), torch.tensor([7, 2, 5]))
    ok = True
    for exporter in ("dynamo", "torchscript"):
        path = deploy_lstm.export_onnx(model, out / f"tagger-{exporter}.onnx", example_inputs=example, exporter=exporter, **CALL)
        report = deploy_lstm.validate(model, path, example_inputs=example, devices=("cpu",), **CALL)
        worst = max(c.max_abs for c in report.checks if c.reference == "torch.nn.LSTM")
        print(f"wrote {path}; onnxruntime vs the original nn.LSTM model: max abs error {worst:.2e} "
              f"over {len(report.cases)} shapes ({'passed' if report.passed else 'FAILED'})")
        ok = ok and report.passed
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

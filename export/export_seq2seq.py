#!/usr/bin/env python
"""Deploy a seq2seq model as an encoder graph and a one-step decoder graph (copy and adapt).

    python export/export_seq2seq.py --out out/seq2seq

An autoregressive decoder runs a Python loop over its output steps.  Traced whole,
that loop is unrolled and the graph only works for the example's length (deploy_lstm
refuses such an export and says so).  The usual deployment instead exports:

* ``encoder``: source tokens (S, N) -> the final state (h, c), each (N, H);
* ``decoder``: one step, token (N,) and state (h, c) -> logits (N, V) and the new state;

and runs the greedy loop in the application.  This script writes both graphs as ONNX
(``encoder.onnx``, ``decoder.onnx``) and TorchScript (``encoder.ts``, ``decoder.ts``;
the C++ loop is ``serving/cpp/tools/seq2seq_greedy.cpp``), validates each against
the original ``nn.LSTM``/``nn.LSTMCell`` model, and checks that greedy decoding over
onnxruntime gives the eager model's tokens.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

import deploy_lstm

BOS, EOS = 1, 2


class Encoder(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, num_layers=2)

    def forward(self, src: Tensor) -> Tuple[Tensor, Tensor]:
        _, (h, c) = self.rnn(self.embed(src))  # src (S, N); h, c (2, N, H)
        return h[-1], c[-1]  # the top layer's final state, (N, H) each


class DecoderStep(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.cell = nn.LSTMCell(embed, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, token: Tensor, h: Tensor, c: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        h, c = self.cell(self.embed(token), (h, c))  # token (N,); h, c (N, H)
        return self.out(h), h, c  # logits (N, V)


class Seq2Seq(nn.Module):
    """Your model (replace with your own): its decode loop is what the application runs."""

    def __init__(self, vocab: int = 40, embed: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.encoder = Encoder(vocab, embed, hidden)
        self.decoder = DecoderStep(vocab, embed, hidden)

    def forward(self, src: Tensor, max_len: int = 10) -> Tensor:
        return greedy(lambda s: self.encoder(s), lambda t, h, c: self.decoder(t, h, c), src, max_len)


def greedy(encode: Callable, step: Callable, src, max_len: int):  # type: ignore[no-untyped-def,type-arg]
    """Greedy decoding over any encoder/decoder-step pair (torch or numpy): (N, max_len) tokens."""
    h, c = encode(src)
    token = src[0] * 0 + BOS  # (N,) of BOS, same kind as src
    tokens = []
    for _ in range(max_len):
        logits, h, c = step(token, h, c)
        token = logits.argmax(-1)
        tokens.append(token)
    stack = torch.stack if isinstance(src, Tensor) else np.stack
    return stack(tokens, 1)


ENCODER = dict(input_names=["src"], output_names=["h", "c"], dynamic_axes={"src": {0: "sequence", 1: "batch"}, "h": {0: "batch"}, "c": {0: "batch"}})
DECODER = dict(
    input_names=["token", "h0", "c0"], output_names=["logits", "h", "c"],
    dynamic_axes={n: {0: "batch"} for n in ("token", "h0", "c0", "logits", "h", "c")},
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/seq2seq", help="folder for encoder/decoder .onnx and .ts")
    parser.add_argument("--max-len", type=int, default=12, help="tokens to decode")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    original = Seq2Seq().eval()  # or load your checkpoint
    model = deploy_lstm.swap_lstms(copy.deepcopy(original))
    src = torch.randint(3, 40, (9, 4))  # (S, N)
    h = torch.zeros(4, 32)
    examples = {"encoder": ((src,), ENCODER), "decoder": ((src[0], h, h), DECODER)}

    sessions = {}
    for name, (example, io) in examples.items():
        part = getattr(model, name)
        onnx_path = deploy_lstm.export_onnx(part, out / f"{name}.onnx", example_inputs=example, **io)
        ts_path = deploy_lstm.export_torchscript(part, out / f"{name}.ts")
        report = deploy_lstm.validate(part, onnx_path, ts_path, example_inputs=example, devices=("cpu",), **io)
        print(f"{name}: {onnx_path.name} and {ts_path.name} {'passed' if report.passed else 'FAILED'}")
        if not report.passed:
            print(report.table())
            return 1
        sessions[name] = deploy_lstm.OnnxLSTM(onnx_path)

    def encode(s: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        got = sessions["encoder"].run({"src": s})
        return got["h"], got["c"]

    def step(t: np.ndarray, h: np.ndarray, c: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = sessions["decoder"].run({"token": t, "h0": h, "c0": c})
        return got["logits"], got["h"], got["c"]

    test_src = torch.randint(3, 40, (13, 2))  # another length and batch than the examples
    ours = greedy(encode, step, test_src.numpy(), args.max_len)
    with torch.no_grad():
        theirs = original(test_src, args.max_len).numpy()
    print(f"greedy tokens (onnxruntime):  {ours.tolist()}\ngreedy tokens (eager nn.LSTM): {theirs.tolist()}")
    return 0 if np.array_equal(ours, theirs) else 1


if __name__ == "__main__":
    raise SystemExit(main())

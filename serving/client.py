#!/usr/bin/env python
"""One tritonclient script for `deploy-lstm serve` and for Triton with the generated repository.

Unchanged but for the URL (and --grpc):

    python serving/client.py --url localhost:8000 --model lstm            # deploy-lstm serve, HTTP
    python serving/client.py --url localhost:8001 --model lstm --grpc     # the same, gRPC
    python serving/client.py --url triton:8000 --model lstm               # Triton, 'deploy-lstm triton' repository

For a batch-first LSTM (export with --batch-first; add --lengths so `deploy-lstm serve` can pad
mixed lengths): it sends one whole sequence to MODEL, then the same sequence in chunks to
MODEL_stream with sequence_id/sequence_start/sequence_end (the server carries h and c), and checks
that both give the same output.  --save FILE writes input and outputs to an .npz.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="localhost:8000")
    p.add_argument("--model", default="lstm")
    p.add_argument("--grpc", action="store_true", help="use gRPC (the URL's port is then the gRPC port)")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--sequence-id", type=int, default=1001)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", help="write input, output and streamed output to this .npz")
    args = p.parse_args(argv)

    client: Any = (grpcclient if args.grpc else httpclient).InferenceServerClient(args.url)
    tc: Any = grpcclient if args.grpc else httpclient
    meta = client.get_model_metadata(args.model)
    shape = list(meta.inputs[0].shape) if args.grpc else meta["inputs"][0]["shape"]
    features = int(shape[-1])  # input is (batch, sequence, features)

    def infer(model: str, x: np.ndarray, **sequence: Any) -> np.ndarray:
        inp = tc.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer(model, [inp], outputs=[tc.InferRequestedOutput("output")], **sequence).as_numpy("output")

    x = np.random.default_rng(args.seed).standard_normal((1, args.steps, features)).astype(np.float32)
    whole = infer(args.model, x)
    parts = []
    starts = list(range(0, args.steps, args.chunk))
    for k, t in enumerate(starts):
        parts.append(infer(args.model + "_stream", x[:, t:t + args.chunk], sequence_id=args.sequence_id,
                           sequence_start=k == 0, sequence_end=k == len(starts) - 1))
    streamed = np.concatenate(parts, axis=1)
    diff = float(np.abs(streamed - whole).max())
    print(f"{args.model} at {args.url}: output {tuple(whole.shape)}; {len(parts)} chunks streamed, max |stream - whole| = {diff:.2e}")
    if args.save:
        np.savez(args.save, input=x, output=whole, streamed=streamed)
    return 0 if diff <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

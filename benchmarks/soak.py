"""Soak ``deploy-lstm serve``: minutes of valid and hostile traffic mixed, the server's memory sampled.

Valid clients (tritonclient over HTTP and gRPC, single requests and streams in chunks) have
every answer compared with torch.nn.LSTM; hostile ones send issue 19's cases (wrong types,
deep nesting, decompression bombs, oversized JSON, ids and shapes, made-up model names).
Prints the server's resident memory over time and the counts of right and wrong answers;
exits 1 if any valid answer was wrong or any hostile request did not get its status.

    python benchmarks/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import hostile  # noqa: E402  (the suite's catalogue of hostile requests)
from test_server import Server, expected  # noqa: E402

import deploy_lstm  # noqa: E402
from deploy_lstm.pipeline import export_folder  # noqa: E402

MiB = 1 << 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--valid-threads", type=int, default=8, help="valid clients (default 8)")
    parser.add_argument("--hostile-threads", type=int, default=3, help="hostile clients (default 3)")
    parser.add_argument("--sample-s", type=float, default=30.0, help="seconds between memory samples (default 30)")
    args = parser.parse_args()
    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp()) / "lstm"
    export_folder(deploy_lstm.LSTM(5, 7, num_layers=2), folder, artifacts=["onnx"], lengths=True)
    oracle = nn.LSTM(5, 7, num_layers=2)
    oracle.load_state_dict(deploy_lstm.load(folder).state_dict())
    oracle = oracle.double().eval()
    server = Server(folder, "--name", "lstm")
    limit = 64 * MiB  # the default --max-request-bytes
    cases = hostile.all_cases(limit) + [hostile.Hostile(
        "the issue's bomb", hostile.bomb_gzip(limit - 64), 413, "over this server's limits", {"Content-Encoding": "gzip"})]
    traffic = hostile.Traffic(server.url, server.grpc_url, lambda x: expected(oracle, x)["output"], cases,
                              valid_threads=args.valid_threads, hostile_threads=args.hostile_threads)
    start_rss, _ = hostile.server_memory(server.proc.pid)
    print(f"server RSS at start: {start_rss / MiB:.0f} MiB; {len(cases)} hostile cases; {args.minutes:g} minutes", flush=True)
    runner = threading.Thread(target=traffic.run, args=(args.minutes * 60,))
    t0 = time.monotonic()
    runner.start()
    samples = []
    while runner.is_alive():
        runner.join(args.sample_s)
        rss, peak = hostile.server_memory(server.proc.pid)
        samples.append(rss)
        t = traffic.tally
        print(f"{time.monotonic() - t0:6.0f} s  RSS {rss / MiB:6.0f} MiB  peak {peak / MiB:6.0f} MiB  "
              f"valid right {t.valid:6d} wrong {len(t.wrong):3d}  hostile as expected {t.hostile:6d} not {len(t.unexpected):3d}",
              flush=True)
    status = server.stop()
    t = traffic.tally
    half = samples[len(samples) // 2:]
    print(f"RSS: start {start_rss / MiB:.0f} MiB, min/max over the second half {min(half) / MiB:.0f}/{max(half) / MiB:.0f} MiB, "
          f"end {samples[-1] / MiB:.0f} MiB; server exit {status}")
    print(f"valid answers right: {t.valid}, wrong: {len(t.wrong)}; hostile answered as expected: {t.hostile}, not: {len(t.unexpected)}")
    for line in (t.wrong + t.unexpected)[:10]:
        print("  ", line)
    return 1 if t.wrong or t.unexpected or status != 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())

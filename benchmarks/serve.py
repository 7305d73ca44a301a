"""The serving benchmark: ``deploy-lstm serve`` against the raw onnxruntime session and KServe.

    python benchmarks/serve.py                         # full run, ~3 min on 2 quiet cores -> benchmarks/results/serve/
    python benchmarks/serve.py --quick --out /tmp/s    # smoke run, ~1 min
    python benchmarks/serve.py --no-kserve             # without KServe's ModelServer

The same seeded requests (batch 1, sequence length T uniform in ``--t-min..--t-max``) go to:

1. ``raw``: the onnxruntime session in this process, one call at a time (the floor);
2. ``ours``: ``deploy-lstm serve`` (dynamic batching, the defaults) and ``ours-nobatch``
   (``--max-batch 1``), at 1 client (sequential) and at ``--clients`` concurrent clients;
3. ``kserve``: the same onnxruntime session (``deploy_lstm.runtime.OnnxLSTM``) in a
   ``kserve.Model`` under KServe's ``ModelServer`` (this file, ``--kserve-worker``), same loads.
   KServe is not a project dependency: ``pip install kserve`` (~425 MB) to include it.
4. ``ours-h11``: ``deploy-lstm serve`` with httptools hidden, so uvicorn parses HTTP with
   h11, as it does where httptools is not installed (the ``serve`` extra installs it).
5. ``.pt2``: ``raw-aoti``, the folder's AOTInductor package in this process, one call at a
   time (the floor of that engine), and ``ours-aoti``, ``deploy-lstm serve --artifact aoti``.
6. A repository: ``ours-repo`` serves ``--repo-models`` copies of the folder as models
   ``m0``, ``m1``, ... (``deploy-lstm serve REPO``), request i going to model i mod n (mixed
   traffic); its floor ``raw-repo`` is one onnxruntime session per model in this process.

Every server is a subprocess on loopback.  One client for all of them: asyncio tasks, each
with one keep-alive HTTP/1.1 connection, sending pre-encoded v2 requests (binary tensors
by default, which KServe accepts too; ``--wire json`` for JSON) with an ``id`` and a ``Content-Type``.  Backends are
interleaved: in each round every backend (order rotated per round) idles ``--pause-ms``
and then runs one timed block (see NOTES.md, "Benchmarking on a 2-core VM").
Run it alone: it times things.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "serve"
MODEL = "lstm"  # the model's name on every server, so every request's bytes are identical
OUTPUTS = ("output", "hn", "cn")  # requested from every server, all of them
AIM_LOW_LOAD = 1.3  # ours p50 at 1 client <= 1.3x the raw session's p50
AIM_BATCHING = 3.0  # ours (batching) throughput at N clients >= 3x ours with --max-batch 1
ATOL = 1e-4  # outputs of every server vs the raw session (same session type, same weights)
MAX_OTHER_SHARE = 0.10  # other processes' share of the CPU during the timed blocks above which no aim is judged

#: backend key -> label
LABELS = {
    "raw": "raw onnxruntime (in-process)",
    "engine": "deploy-lstm engine (in-process, no HTTP)",
    "ours": "deploy-lstm serve",
    "ours-nobatch": "deploy-lstm serve --max-batch 1",
    "ours-h11": "deploy-lstm serve, h11 (no httptools)",
    "ours-nospin": "deploy-lstm serve, onnxruntime spinning off (experiment)",
    "kserve": "KServe ModelServer",
    "raw-aoti": "raw .pt2 AOTInductor package (in-process)",
    "ours-aoti": "deploy-lstm serve --artifact aoti (.pt2)",
    "raw-repo": "raw onnxruntime, one session per model (in-process, mixed traffic)",
    "ours-repo": "deploy-lstm serve REPO (copies of the model, mixed traffic)",
}
SERVERS = ("ours", "ours-nobatch", "ours-aoti", "ours-repo", "ours-h11", "ours-nospin", "kserve")
IN_PROCESS = ("raw", "raw-aoti", "raw-repo")  # one call at a time in this process: the floors


@dataclasses.dataclass
class Settings:
    """One run's settings (recorded in results.json)."""

    input_size: int = 64
    hidden_size: int = 256
    num_layers: int = 2
    t_min: int = 8  # sequence lengths, uniform in t_min..t_max
    t_max: int = 128
    requests: int = 1024  # distinct requests in the seeded pool
    seed: int = 0
    clients: int = 32  # concurrent clients in the loaded configurations
    rounds: int = 5  # interleaved rounds
    seq_block: int = 150  # requests per sequential (1 client) block
    conc_block: int = 640  # requests per concurrent block (spread over the clients)
    warmup: int = 64  # untimed requests per backend and load before the rounds
    pause_ms: float = 50.0  # idle before each timed block
    threads: int = 0  # onnxruntime intra-op threads everywhere (0: the core count)
    wires: Tuple[str, ...] = ("binary",)  # request/response encodings measured (json: --wire json, slow)
    kserve: bool = True
    h11: bool = True  # also measure ours with uvicorn's h11 parser
    nospin: bool = True  # also measure ours with onnxruntime's intra-op spinning off (an experiment)
    aoti: bool = True  # also measure the folder's .pt2 (AOTInductor): in-process and served
    repo_models: int = 3  # models of the repository run (copies of the folder); 0: no repository run
    max_batch: int = 32  # the server's defaults, recorded
    max_delay_ms: float = 2.0
    max_padding: float = 0.5
    timeout_s: float = 60.0  # per request; and for a server to become ready

    @classmethod
    def quick(cls) -> "Settings":
        return cls(requests=256, rounds=3, seq_block=40, conc_block=256, warmup=32, wires=("binary",))


# --- requests and the v2 wire format ------------------------------------------------------


def make_inputs(s: Settings) -> List[np.ndarray]:
    """The seeded request pool: inputs of shape (T, 1, input_size), float32."""
    rng = np.random.default_rng(s.seed)
    steps = rng.integers(s.t_min, s.t_max + 1, size=s.requests)
    return [rng.standard_normal((int(t), 1, s.input_size)).astype(np.float32) for t in steps]


def full_feeds(x: np.ndarray, num_layers: int, hidden_size: int) -> Dict[str, np.ndarray]:
    """What every backend feeds the session for input x: zero state, every sequence whole."""
    T, N = x.shape[:2]
    zeros = np.zeros((num_layers, N, hidden_size), dtype=np.float32)
    return {"input": x, "h0": zeros, "c0": zeros.copy(), "lengths": np.full((N,), T, dtype=np.int64)}


def encode_request(x: np.ndarray, request_id: str, wire: str) -> Tuple[bytes, Dict[str, str]]:
    """A v2 infer body for input x asking for every output; (body, headers).

    ``binary``: the tensor extension both ways (``Inference-Header-Content-Length``);
    ``json``: data as JSON lists both ways.  Both carry an ``id`` and a ``Content-Type``
    (KServe needs both).
    """
    entry: Dict[str, Any] = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    binary = wire == "binary"
    if binary:
        raw = np.ascontiguousarray(x, dtype="<f4").tobytes()
        entry["parameters"] = {"binary_data_size": len(raw)}
    elif wire == "json":
        entry["data"] = x.reshape(-1).tolist()
    else:
        raise ValueError(f"wire must be 'binary' or 'json', got {wire!r}")
    doc = {"id": request_id, "inputs": [entry],
           "outputs": [{"name": n, "parameters": {"binary_data": binary}} for n in OUTPUTS]}
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not binary:
        return header, {"Content-Type": "application/json"}
    return header + raw, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}


def decode_response(body: bytes, headers: Mapping[str, str]) -> Dict[str, np.ndarray]:
    """The outputs of a v2 infer response (JSON, or JSON + binary tensors)."""
    n = headers.get("inference-header-content-length")
    header, tail = (body[:int(n)], body[int(n):]) if n is not None else (body, b"")
    doc = json.loads(header)
    outs, offset = {}, 0
    for o in doc["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            outs[o["name"]] = np.frombuffer(tail[offset:offset + size], dtype="<f4").reshape(o["shape"])
            offset += size
        else:
            outs[o["name"]] = np.asarray(o["data"], dtype=np.float32).reshape(o["shape"])
    return outs


# --- a minimal keep-alive HTTP/1.1 client (the same for every server) ---------------------


def http_request(method: str, path: str, host: str, port: int, body: bytes = b"", headers: Optional[Mapping[str, str]] = None) -> bytes:
    """The bytes of one HTTP/1.1 request (built once, sent many times)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> Tuple[int, Dict[str, str]]:
    """(status, lower-cased headers) of a response head (status line and headers, no blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP/1.x status line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers


class Connection:
    """One keep-alive connection; :meth:`send` writes a prepared request and reads the answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def open(self) -> "Connection":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        return self

    async def send(self, request: bytes) -> Tuple[int, Dict[str, str], bytes]:
        assert self.reader is not None and self.writer is not None, "open() first"
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, headers = parse_head(head[:-4])
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            body = b"".join(chunks)
        else:
            raise ConnectionError(f"response without Content-Length or chunked encoding (status {status})")
        if headers.get("connection", "").lower() == "close":
            await self.close()
            await self.open()
        return status, headers, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            self.writer = self.reader = None


# --- statistics and verdicts (pure) --------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between order statistics (numpy's default)."""
    if not len(values):
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize(latencies_ms: Sequence[float], walls_s: Sequence[float], errors: int = 0) -> Dict[str, Any]:
    """Latency percentiles over every request of every block, and throughput.

    ``throughput_rps`` is all requests over the summed wall time of the blocks;
    ``round_throughput_rps`` is per block, to show the spread.  ``walls_s`` holds one
    wall time per block; each block's requests count equally.
    """
    n = len(latencies_ms)
    wall = float(sum(walls_s))
    return {
        "requests": n, "errors": errors, "blocks": len(walls_s),
        "p50_ms": percentile(latencies_ms, 50), "p90_ms": percentile(latencies_ms, 90),
        "p99_ms": percentile(latencies_ms, 99), "mean_ms": float(np.mean(latencies_ms)),
        "max_ms": float(np.max(latencies_ms)),
        "throughput_rps": n / wall if wall > 0 else float("nan"),
        "wall_s": wall,
    }


def find(res: Mapping[str, Any], backend: str, wire: str, clients: int) -> Optional[Dict[str, Any]]:
    """The measured configuration (backend, wire, clients), or None."""
    for c in res["configs"]:
        if c["backend"] == backend and c["wire"] in (wire, "-") and c["clients"] == clients and "p50_ms" in c:
            return c
    return None


def aims(res: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The brief's aims, per wire format: measured ratio, limit, met (None: not measured)."""
    s = res["settings"]
    out = []
    for wire in s["wires"]:
        raw, ours1 = find(res, "raw", wire, 1), find(res, "ours", wire, 1)
        oursN, nobN = find(res, "ours", wire, s["clients"]), find(res, "ours-nobatch", wire, s["clients"])
        ks1, ksN = find(res, "kserve", wire, 1), find(res, "kserve", wire, s["clients"])

        def verdict(aim: str, num: Optional[Dict], den: Optional[Dict], key: str, limit: float, higher: bool) -> Dict[str, Any]:
            entry: Dict[str, Any] = {"wire": wire, "aim": aim, "limit": limit, "ratio": None, "met": None}
            if num is None or den is None:
                missing = [name for name, c in (("numerator", num), ("denominator", den)) if c is None]
                entry["reason"] = "not measured (" + ", ".join(missing) + ")"
                return entry
            ratio = num[key] / den[key]
            entry.update(ratio=ratio, met=bool(ratio >= limit if higher else ratio <= limit),
                         numerator=num[key], denominator=den[key], key=key)
            return entry

        out += [
            verdict(f"ours p50 at 1 client <= {AIM_LOW_LOAD:g}x raw session p50", ours1, raw, "p50_ms", AIM_LOW_LOAD, False),
            verdict(f"ours throughput at {s['clients']} clients >= {AIM_BATCHING:g}x ours --max-batch 1",
                    oursN, nobN, "throughput_rps", AIM_BATCHING, True),
            verdict(f"ours throughput at {s['clients']} clients > KServe's", oursN, ksN, "throughput_rps", 1.0, True),
            verdict(f"ours p50 at {s['clients']} clients < KServe's", oursN, ksN, "p50_ms", 1.0, False),
            verdict("ours p50 at 1 client < KServe's", ours1, ks1, "p50_ms", 1.0, False),
            verdict(f"ours .pt2 p50 at 1 client <= {AIM_LOW_LOAD:g}x raw .pt2 p50", find(res, "ours-aoti", wire, 1),
                    find(res, "raw-aoti", wire, 1), "p50_ms", AIM_LOW_LOAD, False),
            verdict(f"ours repository p50 at 1 client <= {AIM_LOW_LOAD:g}x raw sessions p50", find(res, "ours-repo", wire, 1),
                    find(res, "raw-repo", wire, 1), "p50_ms", AIM_LOW_LOAD, False),
        ]
    for a in out:  # "> 1" and "< 1" are strict
        if a["met"] is not None and a["limit"] == 1.0 and a["ratio"] == 1.0:
            a["met"] = False
    busy = busy_machine(res)
    for a in out:  # on a machine others were using, the ratios are measured but not judged
        if busy and a["met"] is not None:
            a["met"], a["reason"] = None, busy
    return out


def busy_machine(res: Mapping[str, Any]) -> Optional[str]:
    """Why no aim is judged (other processes took more than MAX_OTHER_SHARE of the CPU), or None."""
    share = (res.get("interference") or {}).get("other_share", 0.0)
    if share <= MAX_OTHER_SHARE:
        return None
    return (f"not judged: other processes used {100 * share:.0f}% of the CPU during the timed blocks "
            f"(limit {100 * MAX_OTHER_SHARE:.0f}%)")


def parse_prometheus(text: str) -> Dict[str, float]:
    """``name{labels}`` -> value of a Prometheus text exposition (comments skipped)."""
    out: Dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            continue
    return out


def batch_stats(before: Mapping[str, float], after: Mapping[str, float], model: Optional[str] = MODEL) -> Dict[str, float]:
    """What ``deploy-lstm serve``'s batchers did between two scrapes of /metrics: those of
    ``model`` (every version), or of every model (None)."""
    def total(scrape: Mapping[str, float], metric: str) -> float:
        return sum(v for k, v in scrape.items() if k.startswith(metric + "{") and (model is None or f'model="{model}"' in k))

    def delta(metric: str) -> float:
        return total(after, metric) - total(before, metric)

    batches = delta("deploy_lstm_batch_requests_count")
    if batches <= 0:
        return {"batches": 0}
    return {
        "batches": batches,
        "requests_per_batch": delta("deploy_lstm_batch_requests_sum") / batches,
        "rows_per_batch": delta("deploy_lstm_batch_rows_sum") / batches,
        "padding_ratio": delta("deploy_lstm_padding_ratio_sum") / batches,
        "compute_ms_per_batch": 1000 * delta("deploy_lstm_compute_seconds_sum") / batches,
        "queue_ms_per_request": 1000 * delta("deploy_lstm_queue_seconds_sum") / max(delta("deploy_lstm_queue_seconds_count"), 1),
        "server_ms_per_request": 1000 * delta('deploy_lstm_request_seconds_sum') / max(delta("deploy_lstm_request_seconds_count"), 1),
    }


# --- reports ---------------------------------------------------------------------------------


def _fmt(v: Optional[float], digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def to_markdown(res: Mapping[str, Any]) -> str:
    """The results as markdown: setup, one row per configuration, the aims, what was not measured."""
    m, s, req = res["machine"], res["settings"], res["requests"]
    load = res.get("load", {})
    lines = [
        "# deploy-lstm serving benchmark", "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, onnxruntime {m['onnxruntime']}, "
        + ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items() if v) + ".",
        f"Load average before the run: {load.get('before', '-')} (1/5/15 min), after: {load.get('after', '-')}. "
        f"Other processes used {_fmt(100 * res['interference']['other_share'], 1)}% of the CPU during the timed blocks "
        f"(worst block {_fmt(100 * res['interference']['worst_share'], 1)}%).",
        f"Model: deploy_lstm.LSTM(input_size={s['input_size']}, hidden_size={s['hidden_size']}, num_layers={s['num_layers']}), "
        f"float32, exported with a `lengths` input (`export_folder(..., artifacts={['onnx'] + (['aoti'] if s.get('aoti') else [])}, "
        "lengths=True)`)."
        + (f" Repository run: {s['repo_models']} copies of the folder as models m0, m1, ..., request i to model i mod "
           f"{s['repo_models']}." if s.get("repo_models") else ""),
        f"Requests: {req['count']} seeded (seed {s['seed']}), batch 1, T uniform in {s['t_min']}..{s['t_max']} "
        f"(mean {_fmt(req['t_mean'], 1)}); every server is asked for all outputs ({', '.join(OUTPUTS)}).",
        f"Servers: subprocesses on 127.0.0.1, onnxruntime intra-op threads {s['threads']} everywhere; `deploy-lstm serve` "
        f"defaults --max-batch {s['max_batch']} --max-delay-ms {s['max_delay_ms']:g} --max-padding {s['max_padding']:g}.",
        f"Client: one implementation for every backend: asyncio tasks, one keep-alive HTTP/1.1 connection each, "
        f"pre-encoded v2 requests with an id and a Content-Type. Wire formats: {', '.join(s['wires'])} "
        "(binary = the binary tensor extension for the input and every output; json = JSON lists both ways).",
        f"Method: {s['warmup']} untimed requests per backend and load, then {s['rounds']} interleaved rounds; per round every "
        f"backend (order rotated) idles {s['pause_ms']:g} ms then runs one timed block: {s['seq_block']} requests from 1 client, "
        f"or {s['conc_block']} requests from {s['clients']} clients. Each block uses the same requests for every backend. "
        "Latency: send to last byte of the response, per request, p50/p99 over all blocks. Throughput: requests / summed block time.",
        f"Wall time: {_fmt(res.get('wall_s'), 0)} s.", "",
    ]
    if busy_machine(res):
        lines += [f"**Not evidence of speed:** other processes used {100 * res['interference']['other_share']:.0f}% of the "
                  f"CPU during the timed blocks (more than {100 * MAX_OTHER_SHARE:.0f}%): the in-process rows competed with "
                  "them directly, so the ratios below are recorded but no aim is judged. Rerun on a quiet machine.", ""]
    lines += [
        "| backend | wire | clients | p50 ms | p99 ms | throughput req/s | server CPU ms/req | client CPU ms/req | batching |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in res["configs"]:
        if "p50_ms" not in c:
            continue
        b = c.get("batching") or {}
        batching = (f"{_fmt(b['requests_per_batch'], 1)} req/batch, padding {_fmt(b['padding_ratio'], 2)}, "
                    f"compute {_fmt(b['compute_ms_per_batch'], 2)} ms/batch" if b.get("batches") else "")
        lines.append(
            f"| {LABELS.get(c['backend'], c['backend'])} | {c['wire']} | {c['clients']} | {_fmt(c['p50_ms'])} | {_fmt(c['p99_ms'])} "
            f"| {_fmt(c['throughput_rps'], 0)} | {_fmt(c.get('server_cpu_ms_per_request'))} | {_fmt(c.get('client_cpu_ms_per_request'))} "
            f"| {batching} |"
        )
    lines += ["", "## Aims", "", "| wire | aim | measured | ratio | met |", "|---|---|---|---|---|"]
    for a in res["aims"]:
        if a["met"] is None and a.get("ratio") is not None:  # measured, not judged
            unit = "ms" if a["key"].endswith("_ms") else "req/s"
            lines.append(f"| {a['wire']} | {a['aim']} | {_fmt(a['numerator'])} vs {_fmt(a['denominator'])} {unit} "
                         f"| {a['ratio']:.2f}x | {a['reason']} |")
            continue
        if a["met"] is None:
            lines.append(f"| {a['wire']} | {a['aim']} | {a.get('reason', 'not measured')} | - | not measured |")
            continue
        unit = "ms" if a["key"].endswith("_ms") else "req/s"
        lines.append(f"| {a['wire']} | {a['aim']} | {_fmt(a['numerator'])} vs {_fmt(a['denominator'])} {unit} "
                     f"| {a['ratio']:.2f}x | {'yes' if a['met'] else '**no**'} |")
    e1, eN = find(res, "engine", "-", 1), find(res, "engine", "-", s["clients"])
    r1 = find(res, "raw", "-", 1)
    if e1 and eN and r1:
        lines += ["", f"Reference (no HTTP, in-process): `deploy-lstm serve`'s engine running the same requests "
                  f"{s['clients']} at a time through its own `plan_batches`/`run_batch` reaches {eN['throughput_rps']:.0f} req/s, "
                  f"{eN['throughput_rps'] / r1['throughput_rps']:.2f}x the raw session one at a time ({r1['throughput_rps']:.0f} req/s) "
                  f"and {eN['throughput_rps'] / e1['throughput_rps']:.2f}x the engine one at a time: the most that batching "
                  "can give here before any HTTP cost."]
    checks = [(k, b) for k, b in res["backends"].items() if "max_abs_diff" in b]
    if checks:
        lines += ["", "Outputs checked against the raw session (first requests of the pool, every wire): "
                  + "; ".join(f"{k} max abs diff {b['max_abs_diff']:.1e}" for k, b in checks) + f" (atol {ATOL:g})."]
    missing = [(k, b) for k, b in res["backends"].items() if "reason" in b]
    if missing:
        lines += ["", "## Not measured", "", "| backend | reason |", "|---|---|"]
        lines += [f"| {LABELS.get(k, k)} | {b['reason'].replace('|', '/')} |" for k, b in missing]
    chart = res.get("chart")
    if chart and not chart.get("written"):
        lines += ["", f"No chart: {chart['reason']}."]
    for note in res.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def plot(res: Mapping[str, Any], path: Path) -> None:
    """Two panels: throughput at N clients per server and wire; p50/p99 per configuration (log)."""
    import matplotlib  # optional: pip install "deploy-lstm[bench]"

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["settings"]
    configs = [c for c in res["configs"] if "p50_ms" in c]
    loaded = [c for c in configs if c["clients"] == s["clients"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.8 + 0.42 * max(len(configs), 4)),
                                   gridspec_kw={"width_ratios": [1, 1.3]})
    names = [f"{LABELS.get(c['backend'], c['backend'])} [{c['wire']}]" for c in loaded]
    ax1.barh(range(len(loaded)), [c["throughput_rps"] for c in loaded], color="tab:blue")
    for i, c in enumerate(loaded):
        ax1.text(c["throughput_rps"], i, f" {c['throughput_rps']:.0f}", va="center", fontsize=7)
    ax1.set_yticks(range(len(loaded)))
    ax1.set_yticklabels(names, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlabel(f"throughput at {s['clients']} clients, requests/s")
    labels = [f"{LABELS.get(c['backend'], c['backend'])} [{c['wire']}, {c['clients']}c]" for c in configs]
    ys = np.arange(len(configs))
    ax2.barh(ys - 0.2, [c["p50_ms"] for c in configs], height=0.4, label="p50")
    ax2.barh(ys + 0.2, [c["p99_ms"] for c in configs], height=0.4, label="p99")
    ax2.set_yticks(ys)
    ax2.set_yticklabels(labels, fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xscale("log")
    ax2.set_xlabel("latency per request, ms (log)")
    ax2.legend(fontsize=7)
    fig.suptitle(f"deploy-lstm serving: LSTM({s['input_size']}, {s['hidden_size']}, {s['num_layers']} layers), "
                 f"T {s['t_min']}..{s['t_max']}, batch 1/request; {res['machine']['cpu']}, {res['machine']['cores']} cores",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write_results(res: Dict[str, Any], out: Path) -> Dict[str, Optional[Path]]:
    """results.png, results.json and results.md in ``out``, each atomically (as bench_report does)."""
    from deploy_lstm.bench.report import matplotlib_missing
    from deploy_lstm.formats.files import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    png = out / "results.png"
    missing = matplotlib_missing()
    if missing is None:
        with atomic_path(png) as tmp:
            plot(res, tmp)
        res["chart"] = {"file": png.name, "written": True}
    else:
        res["chart"] = {"file": png.name, "written": False, "reason": missing.reason}
    paths: Dict[str, Optional[Path]] = {"png": png if missing is None else None}
    for ext, text in (("json", json.dumps(res, indent=1) + "\n"), ("md", to_markdown(res))):
        p = out / f"results.{ext}"
        with atomic_path(p) as tmp:
            tmp.write_text(text)
        paths[ext] = p
    return paths


# --- machine, CPU accounting ----------------------------------------------------------------


def machine() -> Dict[str, Any]:
    from deploy_lstm import bench

    info = bench.machine()
    pkgs = {}
    for name in ("deploy-lstm", "uvicorn", "starlette", "httptools", "uvloop", "kserve", "fastapi"):
        try:
            pkgs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pkgs[name] = None
    info["packages"] = pkgs
    return info


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants so far; 0 if gone."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def _machine_busy_s() -> Optional[float]:
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (fields + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


H11_LAUNCHER = (
    "import sys; sys.modules['httptools'] = None; sys.modules['uvloop'] = None; "  # uvicorn's 'auto' falls back to h11
    "from deploy_lstm.cli import main; sys.exit(main(sys.argv[1:]))"
)
#: an experiment, not the shipped server: every onnxruntime session made with SessionOptions gets
#: session.intra_op.allow_spinning=0, so its pool threads sleep instead of spinning between calls
NOSPIN_LAUNCHER = (
    "import sys, onnxruntime as ort; init = ort.InferenceSession.__init__\n"
    "def patched(self, path, sess_options=None, *a, **k):\n"
    "    if sess_options is not None: sess_options.add_session_config_entry('session.intra_op.allow_spinning', '0')\n"
    "    init(self, path, sess_options, *a, **k)\n"
    "ort.InferenceSession.__init__ = patched\n"
    "from deploy_lstm.cli import main; sys.exit(main(sys.argv[1:]))"
)


def server_command(backend: str, folder: Path, port: int, s: Settings) -> List[str]:
    """The command that serves ``folder`` as ``backend`` on ``port``."""
    threads = str(s.threads)
    if backend == "kserve":
        return [sys.executable, str(Path(__file__).resolve()), "--kserve-worker", str(folder), "--port", str(port), "--threads", threads]
    serve = ["serve", str(folder)] + ([] if backend == "ours-repo" else ["--name", MODEL])  # a repository's models keep their names
    serve += ["--port", str(port), "--grpc-port", "0", "--threads", threads,
              "--max-delay-ms", f"{s.max_delay_ms:g}", "--max-padding", f"{s.max_padding:g}"]
    serve += ["--artifact", "aoti"] if backend == "ours-aoti" else []
    serve += ["--max-batch", "1" if backend == "ours-nobatch" else str(s.max_batch)]
    if backend == "ours-h11":
        return [sys.executable, "-c", H11_LAUNCHER] + serve
    if backend == "ours-nospin":
        return [sys.executable, "-c", NOSPIN_LAUNCHER] + serve
    script = Path(sys.executable).with_name("deploy-lstm")  # the console script beside this interpreter
    return ([str(script)] if script.is_file() else [sys.executable, "-m", "deploy_lstm.cli"]) + serve


@dataclasses.dataclass
class Server:
    backend: str
    port: int
    proc: subprocess.Popen
    log: Path
    startup_s: float = 0.0


async def start_server(backend: str, folder: Path, s: Settings, logdir: Path) -> Server:
    """Start a server subprocess and wait until ``/v2/health/ready`` answers 200.

    Raises:
        RuntimeError: it exited or was not ready in time; the message holds its log's tail.
    """
    port = free_port()
    log = logdir / f"{backend}.log"
    cmd = server_command(backend, folder, port, s)
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=logdir)
    server = Server(backend, port, proc, log)
    probe = http_request("GET", "/v2/health/ready", "127.0.0.1", port)
    while time.perf_counter() - t0 < s.timeout_s:
        if proc.poll() is not None:
            break
        try:
            conn = await Connection("127.0.0.1", port).open()
            try:
                status, _, _ = await asyncio.wait_for(conn.send(probe), 5)
            finally:
                await conn.close()
            if status == 200:
                server.startup_s = time.perf_counter() - t0
                return server
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        await asyncio.sleep(0.1)
    stop_server(server)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    raise RuntimeError(f"{backend} not ready after {time.perf_counter() - t0:.0f} s (exit code {proc.poll()}): " + " / ".join(tail))


def stop_server(server: Server) -> None:
    """SIGTERM, then SIGKILL after 10 s: only the process this script started."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


# --- timing -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Block:
    latencies_ms: List[float]
    wall_s: float
    errors: int
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    other_cpu_s: float = 0.0
    statuses: Dict[int, int] = dataclasses.field(default_factory=dict)


async def run_http_block(port: int, requests: Sequence[bytes], clients: int, pause_s: float, pids: Sequence[int],
                         server_pid: Optional[int], timeout_s: float) -> Block:
    """``requests`` over ``clients`` keep-alive connections (opened untimed), each taking the next request."""
    conns = [await Connection("127.0.0.1", port).open() for _ in range(clients)]
    latencies: List[float] = []
    statuses: Dict[int, int] = {}
    nxt = iter(range(len(requests)))

    async def client(conn: Connection) -> None:
        for i in nxt:
            t0 = time.perf_counter()
            status, _, _ = await asyncio.wait_for(conn.send(requests[i]), timeout_s)
            latencies.append(1000 * (time.perf_counter() - t0))
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.sleep(pause_s)
    cpu0 = _cpu_snapshot(pids, server_pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    wall = time.perf_counter() - t0
    cpu1 = _cpu_snapshot(pids, server_pid)
    for c in conns:
        await c.close()
    errors = sum(n for st, n in statuses.items() if st != 200)
    return Block(latencies, wall, errors, *_cpu_delta(cpu0, cpu1), statuses=statuses)


def run_raw_block(call: Any, feeds: Sequence[Tuple[int, Mapping[str, np.ndarray]]], pause_s: float, pids: Sequence[int]) -> Block:
    """One call at a time (``call(i, feeds)`` for each request i: a session's or a runner's), each timed."""
    latencies = []
    time.sleep(pause_s)
    cpu0 = _cpu_snapshot(pids, None)
    t0 = time.perf_counter()
    for i, f in feeds:
        t = time.perf_counter()
        call(i, f)
        latencies.append(1000 * (time.perf_counter() - t))
    wall = time.perf_counter() - t0
    cpu1 = _cpu_snapshot(pids, None)
    return Block(latencies, wall, 0, *_cpu_delta(cpu0, cpu1))


def run_engine_block(model: Any, inputs: Sequence[np.ndarray], group: int, pause_s: float, pids: Sequence[int]) -> Block:
    """``deploy-lstm serve``'s own batching without HTTP: ``group`` requests at a time are
    prepared, planned (``plan_batches``) and run (``run_batch``), as when all of them are queued.

    A request's latency is from its group's start to the end of its batch.
    """
    from deploy_lstm.serve.batching import plan_batches

    latencies: List[float] = []
    time.sleep(pause_s)
    cpu0 = _cpu_snapshot(pids, None)
    t0 = time.perf_counter()
    for start in range(0, len(inputs), group):
        t = time.perf_counter()
        items = [model.prepare({"input": x}, stream=False) for x in inputs[start:start + group]]
        for batch in plan_batches(items, model.options.max_batch, model.options.max_padding):
            model.run_batch(batch, record=False)
            latencies += [1000 * (time.perf_counter() - t)] * len(batch)
    wall = time.perf_counter() - t0
    cpu1 = _cpu_snapshot(pids, None)
    return Block(latencies, wall, 0, *_cpu_delta(cpu0, cpu1))


def _cpu_snapshot(pids: Sequence[int], server_pid: Optional[int]) -> Tuple[float, float, float, Optional[float]]:
    """(server CPU s, this process's CPU s, every started server's CPU s, machine busy s)."""
    servers = sum(_tree_cpu_s(p) for p in pids)
    return (_tree_cpu_s(server_pid) if server_pid else 0.0), time.process_time(), servers, _machine_busy_s()


def _cpu_delta(a: Tuple, b: Tuple) -> Tuple[float, float, float]:
    server, client, servers = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    other = max(0.0, (b[3] - a[3]) - client - servers) if a[3] is not None and b[3] is not None else 0.0
    return server, client, other


async def scrape(port: int) -> Dict[str, float]:
    conn = await Connection("127.0.0.1", port).open()
    try:
        status, _, body = await conn.send(http_request("GET", "/metrics", "127.0.0.1", port))
    finally:
        await conn.close()
    return parse_prometheus(body.decode()) if status == 200 else {}


async def check_outputs(port: int, bodies: Sequence[bytes], expected: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Max abs difference of a server's outputs from the raw session's.

    Raises:
        RuntimeError: a request failed or an output is missing or of the wrong shape.
    """
    conn = await Connection("127.0.0.1", port).open()
    worst = 0.0
    try:
        for body, want in zip(bodies, expected):
            status, headers, data = await conn.send(body)
            if status != 200:
                raise RuntimeError(f"status {status}: {data[:300]!r}")
            got = decode_response(data, headers)
            for name, value in want.items():
                if name not in got or got[name].shape != value.shape:
                    raise RuntimeError(f"output {name}: expected shape {value.shape}, got "
                                       f"{got[name].shape if name in got else 'nothing'}")
                worst = max(worst, float(np.max(np.abs(got[name] - value))))
    finally:
        await conn.close()
    return worst


# --- the run -----------------------------------------------------------------------------------


def export_model(s: Settings, out: Path, exporter: str = "dynamo") -> Path:
    """A bare LSTM with ``lengths``, exported to ``out`` (ONNX, and the .pt2 unless ``s.aoti`` is off)."""
    import torch

    import deploy_lstm
    from deploy_lstm.pipeline import export_folder

    torch.manual_seed(s.seed)
    export_folder(deploy_lstm.LSTM(s.input_size, s.hidden_size, num_layers=s.num_layers), out,
                  artifacts=["onnx"] + (["aoti"] if s.aoti else []), lengths=True, exporter=exporter, devices=("cpu",))
    return out


def make_repository(folder: Path, root: Path, models: int) -> Path:
    """A repository of ``models`` copies of ``folder``: ``root/m0``, ``root/m1``, ... (as ``deploy-lstm serve`` reads one)."""
    import shutil

    for k in range(models):
        shutil.copytree(folder, root / f"m{k}")
    return root


def repo_model(i: int, s: Settings) -> str:
    """The model of the repository run that request i goes to (mixed traffic: round robin)."""
    return f"m{i % s.repo_models}"


def floors(s: Settings, folder: Path, raw: Any, feeds: Sequence[Mapping[str, np.ndarray]], res: Dict[str, Any]) -> Dict[str, Any]:
    """The in-process backends, ``call(i, feeds)``: the raw session, the .pt2 package (when the
    folder has one and it answers as the session does) and one session per repository model;
    what is left out gets its reason in ``res["backends"]``."""
    from deploy_lstm.runtime.onnx import OnnxLSTM

    calls: Dict[str, Any] = {"raw": lambda i, f: raw.session.run(None, f)}
    if s.aoti:
        if not (folder / "model.pt2").is_file():
            res["backends"]["raw-aoti"] = {"reason": "the folder has no model.pt2 (export it with the aoti artifact)"}
        else:
            from deploy_lstm.runtime.aoti import AotiPackage

            package = AotiPackage(folder / "model.pt2")
            worst = max(float(np.max(np.abs(package.run(f)[k] - v)))
                        for f in feeds[:4] for k, v in zip(raw.output_names, raw.session.run(None, f)))
            if worst > ATOL:
                res["backends"]["raw-aoti"] = {"reason": f".pt2 outputs differ from the raw session by {worst:.2e}; not timed"}
            else:
                calls["raw-aoti"] = lambda i, f: package.run(f)
                res["backends"]["raw-aoti"] = {"label": LABELS["raw-aoti"], "command": "AotiPackage(model.pt2).run(feeds)",
                                               "max_abs_diff": worst}
    if s.repo_models:
        sessions = [OnnxLSTM(folder / "model.onnx", intra_op_num_threads=s.threads) for _ in range(s.repo_models)]
        calls["raw-repo"] = lambda i, f: sessions[i % len(sessions)].session.run(None, f)
        res["backends"]["raw-repo"] = {"label": LABELS["raw-repo"], "command": f"{s.repo_models} x OnnxLSTM(model.onnx), "
                                       "request i on session i mod n"}
    return calls


async def measure(s: Settings, folder: Path, logdir: Path, progress: Any = print) -> Dict[str, Any]:
    """Run every backend (see the module docstring); the results dict."""
    from deploy_lstm.runtime.onnx import OnnxLSTM

    t_start = time.perf_counter()
    threads = s.threads or (os.cpu_count() or 1)
    s = dataclasses.replace(s, threads=threads)
    inputs = make_inputs(s)
    raw = OnnxLSTM(folder / "model.onnx", intra_op_num_threads=threads)
    from deploy_lstm.serve.model import ServedModel, ServeOptions
    from deploy_lstm.formats.folder import load

    engine = ServedModel(load(folder), ServeOptions(name=MODEL, threads=threads, max_batch=s.max_batch,
                                                            max_delay_ms=s.max_delay_ms, max_padding=s.max_padding))
    feeds = [full_feeds(x, s.num_layers, s.hidden_size) for x in inputs]
    bodies = {w: [] for w in s.wires}
    for wire in s.wires:
        for i, x in enumerate(inputs):
            body, headers = encode_request(x, f"r{i}", wire)
            bodies[wire].append((body, headers))
    res: Dict[str, Any] = {
        "machine": machine(), "settings": {**dataclasses.asdict(s), "wires": list(s.wires)},
        "requests": {"count": len(inputs), "t_mean": float(np.mean([x.shape[0] for x in inputs])),
                     "steps": [int(x.shape[0]) for x in inputs[:16]]},
        "backends": {
            "raw": {"label": LABELS["raw"], "command": "OnnxLSTM(model.onnx).session.run(None, feeds)"},
            "engine": {"label": LABELS["engine"], "command": "ServedModel(folder, ServeOptions(threads=...)): prepare() "
                       "+ plan_batches() + run_batch(), 1 request at a time, or CLIENTS requests at a time"},
        },
        "configs": [], "notes": [],
    }
    calls = floors(s, folder, raw, feeds, res)
    repo = make_repository(folder, logdir.parent / "repo", s.repo_models) if s.repo_models else None
    wanted = ["ours", "ours-nobatch"] + (["ours-aoti"] if "raw-aoti" in calls else []) + (["ours-repo"] if repo else [])
    wanted += (["ours-h11"] if s.h11 else []) + (["ours-nospin"] if s.nospin else []) + (["kserve"] if s.kserve else [])
    served = {b: repo if b == "ours-repo" else folder for b in wanted}

    def target(b: str, i: int) -> str:
        return f"/v2/models/{repo_model(i, s) if b == 'ours-repo' else MODEL}/infer"
    servers: Dict[str, Server] = {}
    try:
        for b in wanted:
            if b == "kserve":
                try:
                    importlib.metadata.version("kserve")
                except importlib.metadata.PackageNotFoundError:
                    res["backends"][b] = {"reason": "kserve is not installed (pip install kserve; not a project dependency)"}
                    continue
            progress(f"starting {b} ...")
            try:
                servers[b] = await start_server(b, served[b], s, logdir)
            except RuntimeError as e:
                res["backends"][b] = {"reason": str(e)}
                continue
            res["backends"][b] = {"label": LABELS[b], "command": " ".join(server_command(b, served[b], 0, s)).replace(" --port 0", " --port PORT"),
                                  "startup_s": servers[b].startup_s}
        pids = [sv.proc.pid for sv in servers.values()]
        # outputs must match the raw session before anything is timed
        expected = [dict(zip(raw.output_names, raw.session.run(None, f))) for f in feeds[:4]]
        for b, sv in list(servers.items()):
            worst = 0.0
            try:
                for wire in s.wires:
                    reqs = [http_request("POST", target(b, i), "127.0.0.1", sv.port, *bodies[wire][i]) for i in range(4)]
                    worst = max(worst, await check_outputs(sv.port, reqs, expected))
            except (RuntimeError, OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, KeyError) as e:
                res["backends"][b] = {"reason": f"wrong or failed answer, not timed: {type(e).__name__}: {e}"}
                stop_server(servers.pop(b))
                continue
            res["backends"][b]["max_abs_diff"] = worst
            if worst > ATOL:
                res["backends"][b] = {"reason": f"outputs differ from the raw session by {worst:.2e} (atol {ATOL:g}); not timed"}
                stop_server(servers.pop(b))
        pids = [sv.proc.pid for sv in servers.values()]
        prepared = {b: {w: [http_request("POST", target(b, i), "127.0.0.1", sv.port, *bw) for i, bw in enumerate(bodies[w])]
                        for w in s.wires} for b, sv in servers.items()}

        # (backend, wire, clients) -> blocks
        plan: List[Tuple[str, str, int]] = [(k, "-", 1) for k in calls] + [("engine", "-", 1), ("engine", "-", s.clients)]
        for wire in s.wires:
            plan += [(b, wire, 1) for b in servers]
            plan += [(b, wire, s.clients) for b in servers]
        blocks: Dict[Tuple[str, str, int], List[Block]] = {k: [] for k in plan}
        batching: Dict[Tuple[str, str, int], List[Dict[str, float]]] = {k: [] for k in plan}
        n = len(inputs)

        def pick(r: int, size: int) -> List[int]:  # the requests of round r: the same for every backend
            return [(r * size + j) % n for j in range(size)]

        async def block(key: Tuple[str, str, int], idx: List[int], timed: bool) -> None:
            b, wire, clients = key
            pause = s.pause_ms / 1000
            if b in calls:
                blk = run_raw_block(calls[b], [(i, feeds[i]) for i in idx], pause, pids)
            elif b == "engine":
                blk = run_engine_block(engine, [inputs[i] for i in idx], clients, pause, pids)
            else:
                sv = servers[b]
                before = await scrape(sv.port) if b.startswith("ours") and timed else None
                blk = await run_http_block(sv.port, [prepared[b][wire][i] for i in idx], clients, pause, pids, sv.proc.pid, s.timeout_s)
                if before is not None:
                    batching[key].append(batch_stats(before, await scrape(sv.port), None if b == "ours-repo" else MODEL))
            if timed:
                blocks[key].append(blk)

        progress(f"warm-up: {s.warmup} requests per backend and load")
        for key in plan:
            await block(key, list(range(s.warmup)), timed=False)
        # the in-process backends join the first wire's groups: they have no wire
        groups = [[k for k in plan if k[2] == load and (k[1] == w or (k[1] == "-" and i == 0))]
                  for load in (1, s.clients) for i, w in enumerate(s.wires)]
        for r in range(s.rounds):
            t_round = time.perf_counter()
            for group in groups:
                order = group[r % len(group):] + group[:r % len(group)] if group else []
                for key in order:
                    await block(key, pick(r, s.seq_block if key[2] == 1 else s.conc_block), timed=True)
            progress(f"round {r + 1}/{s.rounds}: {time.perf_counter() - t_round:.1f} s, load {loadavg()}")
    finally:
        for sv in servers.values():
            stop_server(sv)

    other_shares = []
    for key in plan:
        got = blocks.get(key) or []
        if not got:
            continue
        b, wire, clients = key
        lat = [v for blk in got for v in blk.latencies_ms]
        entry: Dict[str, Any] = {"backend": b, "wire": wire, "clients": clients,
                                 **summarize(lat, [blk.wall_s for blk in got], sum(blk.errors for blk in got))}
        entry["round_p50_ms"] = [percentile(blk.latencies_ms, 50) for blk in got]
        entry["round_throughput_rps"] = [len(blk.latencies_ms) / blk.wall_s for blk in got]
        reqs = max(entry["requests"], 1)
        if b not in IN_PROCESS:
            entry["server_cpu_ms_per_request"] = 1000 * sum(blk.server_cpu_s for blk in got) / reqs
        entry["client_cpu_ms_per_request"] = 1000 * sum(blk.client_cpu_s for blk in got) / reqs
        entry["statuses"] = {str(k): sum(blk.statuses.get(k, 0) for blk in got) for k in {k for blk in got for k in blk.statuses}}
        stats = [x for x in batching.get(key, []) if x.get("batches")]
        if stats:
            entry["batching"] = {k: float(np.mean([x[k] for x in stats])) for k in stats[0]}
        wall = sum(blk.wall_s for blk in got)
        other = sum(blk.other_cpu_s for blk in got)
        entry["other_cpu_share"] = other / max(wall * (os.cpu_count() or 1), 1e-9)
        other_shares += [(blk.other_cpu_s / max(blk.wall_s * (os.cpu_count() or 1), 1e-9), blk.wall_s) for blk in got]
        res["configs"].append(entry)
    total_wall = sum(w for _, w in other_shares)
    res["interference"] = {
        "other_share": sum(sh * w for sh, w in other_shares) / max(total_wall, 1e-9),
        "worst_share": max((sh for sh, _ in other_shares), default=0.0),
    }
    res["wall_s"] = time.perf_counter() - t_start
    res["aims"] = aims(res)
    res["notes"].append(
        "The `serve` extra installs httptools (uvicorn's HTTP parser) and uvloop (`deploy-lstm serve` runs on it where "
        "it is installed); KServe's ModelServer uses both too. `ours-h11` hides httptools from `deploy-lstm serve` to "
        "show what it buys (uvicorn falls back to h11). `ours-nospin` is an experiment, "
        "not the shipped server: it starts `deploy-lstm serve` with onnxruntime's SessionOptions patched to "
        "`session.intra_op.allow_spinning=0`. Server CPU ms/req counts every thread of the server process (spinning "
        "included); for the in-process rows the client CPU column is the compute itself."
    )
    return res


# --- KServe worker (run as a subprocess by the benchmark) ----------------------------------------


def kserve_worker(folder: Path, port: int, threads: int) -> None:
    """KServe's ModelServer serving ``folder/model.onnx`` as ``MODEL`` with a ``kserve.Model``.

    ``predict`` runs the same session type as ``deploy-lstm serve`` (``OnnxLSTM``), fills the
    zero state and full ``lengths`` the way that server does, and answers in the format asked for.
    """
    sys.argv = sys.argv[:1]  # kserve parses sys.argv when imported
    import kserve
    from kserve import InferOutput, InferRequest, InferResponse

    from deploy_lstm.runtime.onnx import OnnxLSTM

    class OnnxLSTMModel(kserve.Model):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.session = OnnxLSTM(folder / "model.onnx", intra_op_num_threads=threads)
            cfg = self.session.config
            assert cfg is not None, "a bare deploy_lstm LSTM export"
            self.num_layers, self.hidden_size = cfg.num_states, cfg.hidden_size
            self.ready = True

        def predict(self, payload: InferRequest, headers: Optional[Dict[str, str]] = None) -> InferResponse:
            sent = {i.name: i.as_numpy() for i in payload.inputs}
            x = sent["input"]
            feeds = {**full_feeds(x, self.num_layers, self.hidden_size), **sent}
            outs = self.session.run(feeds)
            infer_outputs = [InferOutput(name=k, shape=list(v.shape), datatype="FP32", data=v) for k, v in outs.items()]
            return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=infer_outputs,
                                 use_binary_outputs=payload.use_binary_outputs, requested_outputs=payload.request_outputs)

    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1).start([OnnxLSTMModel(MODEL)])


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer requests and rounds, binary wire only (~1 min)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT.relative_to(HERE.parent)})")
    p.add_argument("--folder", type=Path, help="serve this export folder (a bare LSTM with lengths) instead of exporting one")
    p.add_argument("--exporter", default="dynamo", choices=("dynamo", "torchscript"), help="ONNX exporter for the model (default dynamo)")
    p.add_argument("--no-kserve", action="store_true", help="leave KServe out")
    p.add_argument("--no-h11", action="store_true", help="leave out the h11 variant of deploy-lstm serve")
    p.add_argument("--no-nospin", action="store_true", help="leave out the experiment: deploy-lstm serve with onnxruntime spinning off")
    p.add_argument("--no-aoti", action="store_true", help="leave out the .pt2 (AOTInductor) engine (its export takes ~1 min)")
    p.add_argument("--repo-models", type=int, help="models in the repository run (copies of the folder; default 3; 0: none)")
    p.add_argument("--max-load", type=float, default=1.5, help="wait while the 1-min load average is above this (default 1.5)")
    p.add_argument("--load-retries", type=int, default=5, help="how many times to wait 30 s for the load to drop (default 5)")
    defaults = Settings()
    for f in ("input_size", "hidden_size", "num_layers", "t_min", "t_max", "requests", "seed", "clients", "rounds",
              "seq_block", "conc_block", "warmup", "pause_ms", "threads"):
        p.add_argument("--" + f.replace("_", "-"), type=type(getattr(defaults, f)), help=f"default {getattr(defaults, f)} ({getattr(Settings.quick(), f)} with --quick)")
    p.add_argument("--wire", action="append", choices=("binary", "json"), help="wire format (repeatable; default binary; --wire binary --wire json adds JSON, ~4x the run time)")
    p.add_argument("--kserve-worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def settings_of(args: argparse.Namespace) -> Settings:
    s = Settings.quick() if args.quick else Settings()
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings) if getattr(args, f.name, None) is not None}
    if args.wire:
        changes["wires"] = tuple(dict.fromkeys(args.wire))
    changes["kserve"] = not args.no_kserve
    changes["h11"] = not args.no_h11
    changes["nospin"] = not args.no_nospin
    changes["aoti"] = not args.no_aoti
    return dataclasses.replace(s, **changes)


def wait_for_quiet(limit: float, retries: int, progress: Any = print) -> str:
    """The load average once the 1-min value is at most ``limit`` (or after ``retries`` waits of 30 s)."""
    for attempt in range(retries + 1):
        load = loadavg()
        try:
            one = float(load.split()[0])
        except (ValueError, IndexError):
            return load
        if one <= limit or attempt == retries:
            return load
        progress(f"load average {load} above {limit:g}: waiting 30 s ({attempt + 1}/{retries})")
        time.sleep(30)
    return loadavg()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.kserve_worker is not None:
        kserve_worker(args.kserve_worker, args.port, args.threads or 0)
        return 0
    s = settings_of(args)
    before = wait_for_quiet(args.max_load, args.load_retries)
    with tempfile.TemporaryDirectory(prefix="deploy-lstm-serve-bench-") as tmp:
        folder = args.folder
        if folder is None:
            print(f"exporting LSTM({s.input_size}, {s.hidden_size}, num_layers={s.num_layers}) with lengths ...", flush=True)
            folder = export_model(s, Path(tmp) / "model", args.exporter)
        logdir = Path(tmp) / "logs"
        logdir.mkdir()
        res = asyncio.run(measure(s, folder.resolve(), logdir, progress=lambda m: print(m, flush=True)))
    res["load"] = {"before": before, "after": loadavg(), "limit": args.max_load}
    res["settings"]["exporter"] = args.exporter if args.folder is None else f"folder {args.folder}"
    res["settings"]["command"] = " ".join(["python benchmarks/serve.py", *(sys.argv[1:] if argv is None else argv)])
    paths = write_results(res, args.out)
    print(to_markdown(res))
    print("wrote " + ", ".join(str(p) for p in paths.values() if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the seed corpus of the fuzz targets: corpus/npy, corpus/json, corpus/folder.

Valid files of each reader (what deploy-lstm writes) and the hostile cases found by fuzzing
(issue 19, item 9), small enough to commit.  Needs numpy only:

    python serving/cpp/fuzz/make_corpus.py      # rewrites serving/cpp/fuzz/corpus/
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
from pathlib import Path
from typing import Dict

import numpy as np

HERE = Path(__file__).resolve().parent

# The files fuzz_folder.cpp makes inside its folder (keep in step with make_folder there);
# link-in.ts, link-out.ts (via ../outside.ts) and sub/model.ts hold model.ts's bytes.
FOLDER_FILES: Dict[str, bytes] = {
    "model.ts": b"deploy-lstm fuzz: torchscript\n",
    "model.pt2": b"deploy-lstm fuzz: aoti\n",
}


def folder_bytes(name: str) -> bytes:
    """What the file a manifest names holds, as the OS would open it (a name is cut at a NUL): the
    hostile entries record the right size and SHA-256, so only the path checks refuse them."""
    base = name.split("\0")[0].split("/")[-1]
    return FOLDER_FILES.get(base, FOLDER_FILES["model.ts"] if base.endswith(".ts") else b"")


def npy_bytes(arr: np.ndarray, version: tuple = (1, 0)) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version)
    return buf.getvalue()


def raw_npy(header: str, data: bytes = b"", major: int = 1) -> bytes:
    """A .npy file with this header text, as given (no padding)."""
    h = header.encode("latin-1")
    length = struct.pack("<H", len(h)) if major == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([major, 0]) + length + h + data


def npy_corpus() -> Dict[str, bytes]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    out = {
        "f4-2x3-v1.npy": npy_bytes(x),
        "f4-2x3-v2.npy": npy_bytes(x, (2, 0)),
        "f8-4-v3.npy": npy_bytes(rng.standard_normal(4), (3, 0)),
        "f8-0d.npy": npy_bytes(np.array(1.5)),
        "i8-lengths.npy": npy_bytes(np.array([5, 3, 1], np.int64)),
        "i8-empty.npy": npy_bytes(np.zeros((0, 4), np.int64)),
        "f4-t-n-i.npy": npy_bytes(rng.standard_normal((3, 2, 4)).astype(np.float32)),
        "double-quotes.npy": raw_npy('{"descr": "<f4", "fortran_order": False, "shape": (2,), }\n', x.tobytes()[:8]),
        # refused: other dtypes and orders
        "big-endian.npy": npy_bytes(x.astype(">f4")),
        "float16.npy": npy_bytes(x.astype(np.float16)),
        "fortran.npy": npy_bytes(np.asfortranarray(x)),
        "bad-version.npy": raw_npy("{}", major=4),
        # hostile: sizes declared by the header that the file does not have (issue 19, item 9)
        "header-4GiB-v3.npy": b"\x93NUMPY\x03\x00" + struct.pack("<I", 0xFFFFFFFF),
        "f8-1G-elements-no-data.npy": raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1073741824,), }"),
        "numel-overflow.npy": raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }"),
        "nbytes-wrap.npy": raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }"),
        "dim-too-large.npy": raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }"),
        "rank-65.npy": raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (" + "1, " * 65 + "), }", b"\0" * 4),
        "truncated.npy": npy_bytes(x)[:-5],
        "trailing.npy": npy_bytes(x) + b"xx",
        "header-cut.npy": npy_bytes(x)[:30],
        "newline-in-descr.npy": raw_npy("{'descr': '<f\n4', 'fortran_order': False, 'shape': (), }"),
    }
    return out


def io_spec(lengths: bool = True) -> dict:
    inputs = [
        {"name": "input", "shape": ["sequence", "batch", 40], "dtype": "float32"},
        {"name": "h0", "shape": [2, "batch", 128], "dtype": "float32"},
        {"name": "c0", "shape": [2, "batch", 128], "dtype": "float32"},
    ]
    if lengths:
        inputs.append({"name": "lengths", "shape": ["batch"], "dtype": "int64"})
    outputs = [
        {"name": "output", "shape": ["sequence", "batch", 128], "dtype": "float32"},
        {"name": "hn", "shape": [2, "batch", 128], "dtype": "float32"},
        {"name": "cn", "shape": [2, "batch", 128], "dtype": "float32"},
    ]
    return {"inputs": inputs, "outputs": outputs}


def json_corpus() -> Dict[str, bytes]:
    lm = {
        "inputs": [
            {"name": "tokens", "shape": ["sequence", "batch"], "dtype": "int64"},
            {"name": "hidden[0]", "shape": [2, "batch", 32], "dtype": "float32"},
            {"name": "hidden[1]", "shape": [2, "batch", 32], "dtype": "float32"},
        ],
        "outputs": [{"name": "logits", "shape": ["sequence", "batch", 100], "dtype": "float32"}],
    }
    spec = json.dumps(io_spec(), sort_keys=True)
    out = {
        "io-lstm.json": spec,
        "io-lstm-no-lengths.json": json.dumps(io_spec(False)),
        "io-lm.json": json.dumps(lm, indent=2),
        "torchscript-config.json": json.dumps({"deploy_lstm.io": spec, "deploy_lstm.config": json.dumps({"hidden_size": 128})}),
        "values.json": '{"a": [1, -0, 0.5, -1.25e-3, 1E+2, true, false, null, "\\u00e9\\ud83d\\ude00\\n\\"\\\\\\/"], "b": {}}',
        "empty-array.json": "[]",
        # refused
        "duplicate-key.json": '{"inputs": [], "outputs": [], "inputs": [{"name": "x", "shape": [1], "dtype": "float32"}]}',
        "duplicate-nested.json": '{"inputs": [{"name": "a", "name": "b", "shape": [], "dtype": "float32"}], "outputs": []}',
        "nan.json": '{"ratio": NaN}',
        "infinity.json": '{"ratio": Infinity}',
        "minus-infinity.json": '{"ratio": -Infinity}',
        "overflow-double.json": '{"ratio": 1e999}',
        "leading-zero.json": '{"bytes": 0123}',
        "int-out-of-range.json": '{"bytes": 99999999999999999999}',
        "deep.json": "[" * 70 + "]" * 70,
        "nul-in-string.json": '{"name": "a\\u0000b"}',
        "newline-in-name.json": json.dumps({"inputs": [{"name": "a\nb", "shape": [1], "dtype": "float32"}], "outputs": []}),
        "bad-escape.json": '{"a": "\\q"}',
        "lone-surrogate.json": '{"a": "\\ud800x"}',
        "trailing-comma.json": '{"a": 1,}',
    }
    return {k: v.encode("utf-8") for k, v in out.items()}


def manifest(artifacts: Dict[str, str], recommendation: object = None, **extra: object) -> dict:
    """A manifest as deploy_lstm/formats/folder.py writes it, for fuzz_folder.cpp's folder."""
    entries = {}
    for kind, name in artifacts.items():
        data = folder_bytes(name)
        entries[kind] = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "details": {}}
    m = {
        "format": "deploy-lstm-export",
        "format_version": 1,
        "created": "2026-01-02T10:20:30+00:00",
        "model": {"kind": "lstm", "config": {"input_size": 40, "hidden_size": 128, "num_layers": 2}},
        "io": io_spec(),
        "artifacts": entries,
        "versions": {"deploy_lstm": "0.2.0", "torch": "2.13.0", "python": "3.11.7"},
        "report": {"max_abs_diff": 1.2e-7, "atol": 1e-5},
    }
    if recommendation is not None:
        m["recommendation"] = recommendation
    m.update(extra)
    return m


def recommended(artifact: str) -> dict:
    return {"measured": "2026-01-02T10:20:30+00:00", "machine": "2 cores", "threads": 2,
            "targets": {"cpp": {"artifact": artifact, "backend": "C++ " + artifact, "ratio": 0.98, "why": "fastest"},
                        "python": {"artifact": "onnx", "backend": "onnxruntime", "ratio": 1.0, "why": "fastest"}}}


def folder_corpus() -> Dict[str, bytes]:
    both = {"torchscript": "model.ts", "aoti": "model.pt2"}
    out = {
        "both.json": manifest(both),
        "recommended-aoti.json": manifest(both, recommended("aoti")),
        "recommended-absent.json": manifest({"torchscript": "model.ts"}, recommended("aoti")),
        "aoti-only.json": manifest({"aoti": "model.pt2"}),
        "link-inside.json": manifest({"torchscript": "link-in.ts"}),
        "changed.json": manifest({"torchscript": "model.pt2"}),
        "malformed-recommendation.json": manifest(both, {"targets": []}),
        "version-2.json": dict(manifest(both), format_version=2),
        # hostile (issue 19, item 9)
        "nul-in-name.json": manifest({"torchscript": "model.ts\0.evil"}),
        "absolute.json": manifest({"torchscript": "/etc/passwd"}),
        "dotdot.json": manifest({"torchscript": "../outside.ts"}),
        "subfolder.json": manifest({"torchscript": "sub/model.ts"}),
        "symlink-outside.json": manifest({"torchscript": "link-out.ts"}),
        "newline-in-kind.json": manifest({"torch\nscript": "model.ts"}, recommended("torch\nscript")),
    }
    text = {k: json.dumps(v, indent=2, sort_keys=True) for k, v in out.items()}
    good = text["both.json"]
    text["duplicate-key.json"] = good.replace('"format_version": 1,', '"format_version": 1,\n  "format_version": 2,')
    text["duplicate-artifact.json"] = good.replace('"artifacts": {', '"artifacts": {\n    "aoti": {"file": "link-out.ts", "sha256": "", "bytes": 0},', 1)
    text["nan-in-report.json"] = good.replace('"max_abs_diff": 1.2e-07', '"max_abs_diff": NaN')
    text["infinity-ratio.json"] = json.dumps(manifest(both, recommended("aoti")), indent=2).replace("0.98", "Infinity")
    for name in ("duplicate-key.json", "duplicate-artifact.json", "nan-in-report.json", "infinity-ratio.json"):
        assert text[name] != good and text[name] != text.get("recommended-aoti.json"), name
    return {k: v.encode("utf-8") for k, v in text.items()}


def main() -> None:
    for target, files in (("npy", npy_corpus()), ("json", json_corpus()), ("folder", folder_corpus())):
        d = HERE / "corpus" / target
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for name, data in files.items():
            (d / name).write_bytes(data)
        print(f"{d}: {len(files)} files, {sum(map(len, files.values()))} bytes")


if __name__ == "__main__":
    main()

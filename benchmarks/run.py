"""Run the deploy-lstm benchmark matrix and judge it against this project's targets.

    python benchmarks/run.py --quick          # smoke run, tiny sizes (about a minute)
    python benchmarks/run.py --full           # 8 configurations x 4 shapes (about 10 minutes on 2 cores)
    python benchmarks/run.py --config input_size=64,hidden_size=256,num_layers=2

Measuring and reporting is ``deploy_lstm.bench`` (what ``deploy-lstm bench`` runs; with the
bf16 artifacts' columns, their error against float32 and a verdict: ``deploy_lstm.bench.bf16``);
this script adds the verdicts of ``benchmarks/targets.py`` to ``results.json``
(``"verdicts"``) and to ``results.md``, and, after the timings, the memory of the
smallest and the largest configuration (``deploy_lstm.bench.memory``: each exported to
a folder with every artifact, each session and export measured in a fresh process).
Run it alone: it times things.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

import targets  # benchmarks/targets.py, beside this script
from deploy_lstm import LSTM
from deploy_lstm import bench
from deploy_lstm.bench.memory import measure_memory, memory_markdown
from deploy_lstm.errors import DeployLSTMError
from deploy_lstm.pipeline import export_folder


def memory(configs: Sequence[Any]) -> List[Dict[str, Any]]:
    """Peak memory of every artifact's session and export, for each configuration."""
    out = []
    with tempfile.TemporaryDirectory(prefix="deploy-lstm-memory-") as tmp:
        for k, cfg in enumerate(configs):
            print(f"memory: {bench.config_name(cfg)}", file=sys.stderr, flush=True)
            torch.manual_seed(0)
            folder, _ = export_folder(LSTM(**dataclasses.asdict(cfg)).eval(), Path(tmp) / str(k),
                                      artifacts=("onnx", "torchscript", "aoti"), quantize="int8", devices=("cpu",))
            out.append({"config": bench.config_name(cfg), **measure_memory(folder.path)})
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(parser)
    args = parser.parse_args(argv)

    def sections(res: Dict[str, Any]) -> List[str]:
        mem = [f"### {m['config']}\n\n" + memory_markdown(m).replace("## Memory\n\n", "") for m in res.get("memory", [])]
        return [targets.to_markdown(res["verdicts"])] + (["## Memory\n\n" + "\n".join(mem)] if mem else [])

    def save(res: Dict[str, Any]) -> Dict[str, Any]:
        res["verdicts"] = targets.verdicts(res)
        return bench.write_results(res, args.out, sections=sections(res))

    try:
        res = bench.measure(args, checkpoint=save)
        if args.memory:
            configs = [bench.parse_config(args.config)] if args.config else bench.matrix(args.quick)
            res["memory"] = memory([configs[0], configs[-1]] if len(configs) > 1 else configs)
    except DeployLSTMError as e:
        print(f"run.py: error: {e}", file=sys.stderr)
        return 2
    paths = save(res)
    print(bench.to_markdown(res, sections(res)))
    print("wrote " + ", ".join(str(p) for p in paths.values() if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())

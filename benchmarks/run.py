"""Run the deploy-lstm benchmark matrix and judge it against this project's targets.

    python benchmarks/run.py --quick          # smoke run, tiny sizes (about a minute)
    python benchmarks/run.py --full           # 8 configurations x 4 shapes (about 10 minutes on 2 cores)
    python benchmarks/run.py --config input_size=64,hidden_size=256,num_layers=2

Measuring and reporting is ``deploy_lstm.bench`` (what ``deploy-lstm bench`` runs);
this script adds the verdicts of ``benchmarks/targets.py`` to ``results.json``
(``"verdicts"``) and to ``results.md``.  Run it alone: it times things.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Optional, Sequence

import targets  # benchmarks/targets.py, beside this script
from deploy_lstm import bench
from deploy_lstm.errors import DeployLSTMError


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(parser)
    args = parser.parse_args(argv)

    def save(res: Dict[str, Any]) -> Dict[str, Any]:
        res["verdicts"] = targets.verdicts(res)
        return bench.write_results(res, args.out, sections=[targets.to_markdown(res["verdicts"])])

    try:
        res = bench.measure(args, checkpoint=save)
    except DeployLSTMError as e:
        print(f"run.py: error: {e}", file=sys.stderr)
        return 2
    paths = save(res)
    print(bench.to_markdown(res, [targets.to_markdown(res["verdicts"])]))
    print("wrote " + ", ".join(str(p) for p in paths.values() if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())

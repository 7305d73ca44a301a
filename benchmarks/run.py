"""Run the deploy-lstm benchmark matrix; results go to benchmarks/results/.

    python benchmarks/run.py --quick          # smoke run, tiny sizes (about a minute)
    python benchmarks/run.py --full           # the matrix of issue #6 (about 15 minutes on 2 cores)
    python benchmarks/run.py --config input_size=64,hidden_size=256,num_layers=2
"""

import argparse
import sys

from deploy_lstm import bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(parser)
    sys.exit(bench.run(parser.parse_args()))

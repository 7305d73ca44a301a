"""The demo: a small LSTM forecaster, trained on a generated signal, shipped with its weights.

    from deploy_lstm.demo import load_demo, demo_report
    demo_report(load_demo())          # or demo_report(session_step(ort_session))

The model is in ``forecaster.py``, the printed report in ``report.py``, training in ``train.py``.

Train it again with ``python -m deploy_lstm.demo.train --out deploy_lstm/demo/forecaster.safetensors``.
"""

from .forecaster import (
    DYNAMIC_AXES,
    HELD_OUT_SEEDS,
    HISTORY,
    HORIZON,
    INPUT_NAMES,
    OUTPUT_NAMES,
    Forecaster,
    StepFn,
    as_step,
    demo_config,
    errors,
    evaluate,
    export_spec,
    forecast,
    forecasts,
    load_demo,
    make_batch,
    make_series,
    naive_forecast,
    seasonal_forecast,
    session_step,
    zero_state,
)
from .report import demo_report, series_rmse, typical_series

__all__ = [
    "DYNAMIC_AXES",
    "HELD_OUT_SEEDS",
    "HISTORY",
    "HORIZON",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "Forecaster",
    "StepFn",
    "as_step",
    "demo_config",
    "demo_report",
    "errors",
    "evaluate",
    "export_spec",
    "forecast",
    "forecasts",
    "load_demo",
    "make_batch",
    "make_series",
    "naive_forecast",
    "seasonal_forecast",
    "series_rmse",
    "session_step",
    "typical_series",
    "zero_state",
]

"""The demo: a small LSTM forecaster, trained on a generated signal, shipped with its weights.

    from deploy_lstm.demo import load_demo, demo_report
    demo_report(load_demo())          # or demo_report(session_step(ort_session))

Train it again with ``python -m deploy_lstm.demo.train --out deploy_lstm/demo/forecaster.safetensors``.
"""

from .forecaster import (
    DEMO_SEED,
    DYNAMIC_AXES,
    HISTORY,
    HORIZON,
    INPUT_NAMES,
    OUTPUT_NAMES,
    Forecaster,
    StepFn,
    as_step,
    demo_config,
    demo_report,
    errors,
    evaluate,
    export_spec,
    forecast,
    load_demo,
    make_batch,
    make_series,
    naive_forecast,
    seasonal_forecast,
    session_step,
    zero_state,
)

__all__ = [
    "DEMO_SEED",
    "DYNAMIC_AXES",
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
    "load_demo",
    "make_batch",
    "make_series",
    "naive_forecast",
    "seasonal_forecast",
    "session_step",
    "zero_state",
]

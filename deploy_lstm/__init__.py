"""deploy-lstm: a scriptable, exportable drop-in for torch.nn.LSTM."""

__version__ = "0.1.0"

from .contract import IOSpec, LSTMConfig, TensorSpec, lstm_io  # noqa: E402
from .convert import restore_lstms, swap_lstms  # noqa: E402
from .errors import ExportError, LSTMInputError  # noqa: E402
from .model import LSTM, LSTMCell  # noqa: E402
from .onnx_export import export_onnx  # noqa: E402
from .runtime import OnnxLSTM, ValidationReport, validate  # noqa: E402
from .torchscript import export_torchscript  # noqa: E402

__all__ = [
    "LSTM",
    "LSTMCell",
    "swap_lstms",
    "restore_lstms",
    "export_onnx",
    "export_torchscript",
    "OnnxLSTM",
    "validate",
    "ValidationReport",
    "LSTMConfig",
    "IOSpec",
    "TensorSpec",
    "lstm_io",
    "LSTMInputError",
    "ExportError",
    "__version__",
]

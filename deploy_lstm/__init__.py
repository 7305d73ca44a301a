"""deploy-lstm: a scriptable, exportable drop-in for torch.nn.LSTM."""

from .errors import ExportError, LSTMInputError
from .convert import restore_lstms, swap_lstms
from .model import LSTM, LSTMCell

__version__ = "0.1.0"

__all__ = [
    "LSTM",
    "LSTMCell",
    "swap_lstms",
    "restore_lstms", "LSTMInputError", "ExportError", "__version__"]

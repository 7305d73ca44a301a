"""The modules, and nothing else: torch only, no exporter, no file format.

``LSTM`` and ``LSTMCell`` (scriptable drop-ins for ``torch.nn.LSTM``/``LSTMCell``),
``LSTMConfig`` (their constructor arguments), ``swap_lstms``/``restore_lstms`` (in any
model, and back).  Behind them: the recurrence written once (``recurrence``), nn.LSTM's
checks and call convention (``checks``, ``layout``), aten's kernel (``aten``), the
streaming step (``step``), the gate orders of ONNX (``gates``), and the custom ops that
exporters trace and runtimes run (``ops``, imported by those who need it, not here).
Every other room may import this one; it imports only ``deploy_lstm.errors``.
"""

from deploy_lstm.nn.cell import LSTMCell
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.nn.swap import restore_lstms, swap_lstms

__all__ = ["LSTM", "LSTMCell", "LSTMConfig", "swap_lstms", "restore_lstms"]

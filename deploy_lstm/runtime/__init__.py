"""runtime: one runner per artifact kind, behind one interface (:class:`~deploy_lstm.runtime.base.Runner`).

``deploy_lstm.load(DIR).runner(kind)`` (:mod:`deploy_lstm.runtime.folder`) opens an
export folder's artifact: "onnx" and "onnx-int8" (onnxruntime, :mod:`.onnx`),
"torchscript" (:mod:`.torchscript`), "aoti" (AOTInductor, :mod:`.aoti`).  Every runner
is called positionally with the I/O contract's inputs (numpy arrays or torch tensors;
a bare LSTM's ``h0``/``c0``/``lengths`` optional) or with a feed dict (``run``), checks
its inputs first (:mod:`.feeds`), and streams a bare unidirectional LSTM chunk by chunk
(``stream``).  Validation, the benchmark and the server open artifacts through these.

The runtime imports ``formats`` and ``nn`` only (never the exporters): ``nn.ops`` registers
the ``deploy_lstm::fused_lstm`` op that fused AOTInductor packages call.
"""

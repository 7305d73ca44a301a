"""exporters: from a model to an artifact, one module per target, all from one signature.

* ``signature``: what a model's graph takes and returns (flattened inputs, names,
  dynamic axes, examples), computed once per export and handed to every exporter
  (``signature=``) and to validation;
* ``standins``: the copy of the model an exporter traces, each LSTM replaced by a
  graph-friendly stand-in (the caller's model is never touched);
* ``onnx``, ``torchscript``, ``aoti``: ``export_onnx``, ``export_torchscript``,
  ``export_aoti``; each writes its file atomically with its metadata
  (:class:`deploy_lstm.formats.metadata.ArtifactMetadata`);
* ``bf16``: the copy a bf16 export scripts or traces (``precision="bf16"`` of ``export_aoti`` and
  ``export_torchscript``): each LSTM in bfloat16 behind a float32 boundary;
* ``int8``: the int8 transform of an ONNX export (its tolerance and advice are
  ``deploy_lstm.check``'s);
* ``common``: quiet exporter logging and one error family for export failures.

Nothing is re-exported here, so that importing one exporter (or ``signature``, which
validation and the benchmark use) does not load onnx, onnxscript or onnxruntime.
"""

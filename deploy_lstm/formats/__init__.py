"""formats: what deploy-lstm writes and reads, and the only code that reads it.

* ``contract``: the I/O contract (names, shapes, dynamic axes, dtypes) and the metadata keys;
* ``metadata``: ``ArtifactMetadata``, the one codec of the metadata every artifact carries;
* ``strict_json``: JSON both languages read alike (no NaN, no duplicate keys, typed fields);
* ``folder``: the export folder (``manifest.json``, checksums, paths kept inside the folder);
* ``files``: atomic writes; ``checkpoint``: weights from checkpoints; ``onnx_import``:
  an LSTM from an ONNX file.

Nothing is re-exported here: ``import deploy_lstm`` imports ``formats.contract``, and
this package's ``__init__`` runs first, so it stays empty to keep that import light
(no safetensors, no onnx).  Import the modules themselves.
"""

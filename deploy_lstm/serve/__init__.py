"""The server: an export folder served over the v2 inference protocol (Triton's, KServe's),
and the Triton model repository writer.

* ``protocol`` (requests and responses, no transport), ``rest`` and ``grpc_service``
  (the two thin front ends), ``process`` (the running server), ``metrics``;
* ``model`` (the served model: what it is, and ``infer``), ``batching`` (dynamic
  batching), ``sequences`` (streams and their state, bounded);
* ``triton_config`` (the one builder of Triton's model configuration, for the config
  endpoint and the repository), ``config_check`` (a configuration against its graph);
* ``repository`` (``deploy-lstm triton``: a Triton repository and a KServe manifest) and
  ``batch_first`` (its batch-first graphs).

The server needs only ``runtime``, ``formats`` and ``nn``; the repository writer also
exports (``exporters``) and checks (``check``).
"""

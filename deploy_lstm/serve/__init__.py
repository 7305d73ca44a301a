"""The server: an export folder, or a repository of them, served over the v2 inference
protocol (Triton's, KServe's), and the Triton model repository writer.

* ``protocol`` (requests and responses, no transport), ``rest`` and ``grpc_service``
  (the two thin front ends), ``process`` (the running server), ``metrics``;
* ``registry`` (the models and versions served: the repository's layout and config file,
  model control, load/unload/reload, the repository index), ``model`` (one served model
  version: what it is, and ``infer``), ``batching`` (dynamic batching), ``sequences``
  (streams and their state, bounded), ``statistics`` (Triton's statistics extension);
* ``triton_config`` (the one builder of Triton's model configuration, for the config
  endpoint and the repository), ``config_check`` (a configuration against its graph);
* ``repository`` (``deploy-lstm triton``: a Triton repository and a KServe manifest) and
  ``batch_first`` (its batch-first graphs).

The server needs only ``runtime``, ``formats`` and ``nn``; the repository writer also
exports (``exporters``) and checks (``check``).
"""

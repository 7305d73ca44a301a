"""A Python-based Triton backend named ``onnxruntime``: a stand-in for Triton's C++ onnxruntime
backend, so that a repository written by ``deploy_lstm.serve.repository.write_repository`` loads and
serves *unchanged* on a tritonserver that has only the Python backend (the one inside the
``nvidia-pytriton`` wheel, used by the tests).

Install: put this file at ``<backend-dir>/onnxruntime/model.py`` next to
``<backend-dir>/python`` (Triton's Python backend with the stub for the running Python) and
start ``tritonserver --backend-directory <backend-dir>``.  Triton then runs, for each model
whose config says ``backend: "onnxruntime"``, this runner in a Python stub process.

What it does (a generic runner, nothing LSTM-specific):

* opens ``<model>/<version>/model.onnx`` with the ``onnxruntime`` pip package (CPU);
* feeds every graph input by name from the request (inputs and the control tensors START,
  END, CORRID that Triton's sequence batcher adds); returns the outputs the request asked for;
* requests of one ``execute`` call with equal shapes are concatenated along the batch axis
  and run once, as the C++ backend runs a dynamic batch;
* a model whose config has ``sequence_batching.state`` (implicit state): the runner keeps each
  state output itself, per correlation ID, and feeds it as the state input of that sequence's
  next request: zeros (the config's ``initial_state`` is ``zero_data``) when the request has
  START set or the ID is new; the entry is dropped when a request has END set.  Requests of a
  stateful model are run one by one.

What the real C++ onnxruntime backend does instead (and why this runner keeps state itself):
the C++ backend keeps *no* state.  Triton's sequence batcher owns it: it gives each sequence a
slot, feeds the state input from ``initial_state`` on START and otherwise from the previous
response's state output, which the backend hands back through ``TRITONBACKEND_StateNew`` /
``TRITONBACKEND_StateUpdate``; the slot and its state are released on END or after
``max_sequence_idle_microseconds``.  The Python backend does not carry implicit state this way
(measured with tritonserver 2.51 from nvidia-pytriton 0.7.0: the model saw the initial state on
every request), hence the per-correlation-ID store here.  This runner does not drop a sequence
that goes idle without END (the real batcher frees it after the idle timeout), and it does not
do the C++ backend's config auto-completion or ORT-specific parameters.

Tensors cross the stub by DLPack, not ``pb_utils.Tensor(name, ndarray)`` / ``as_numpy()``: the
stub's pybind11 bridge reads numpy 1's dtype layout, and with numpy 2 it gives wrong input values
and a wrong output byte size (measured, numpy 2.4).  The stub renames a consumed capsule
``used_dlpack`` where numpy's capsule destructor expects ``used_dltensor`` (the DLPack name); the
capsule is renamed so numpy does not report it.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

_CONTROL_KINDS = ("CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_CORRID")
_USED_DLTENSOR = b"used_dltensor"  # kept alive for the capsule name pointer
_set_capsule_name = ctypes.pythonapi.PyCapsule_SetName
_set_capsule_name.argtypes = [ctypes.py_object, ctypes.c_char_p]
_set_capsule_name.restype = ctypes.c_int


class _Capsule:
    """Wraps a stub tensor so ``np.from_dlpack`` can read it (numpy wants ``__dlpack__``)."""

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor

    def __dlpack__(self, **_kwargs: Any) -> Any:
        return self.tensor.to_dlpack()

    def __dlpack_device__(self) -> Tuple[int, int]:
        return (1, 0)  # kDLCPU


def _as_numpy(tensor: Any) -> np.ndarray:
    return np.from_dlpack(_Capsule(tensor))


def _to_triton(name: str, array: np.ndarray) -> Any:
    array = np.ascontiguousarray(array)
    capsule = array.__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    _set_capsule_name(capsule, _USED_DLTENSOR)  # the stub owns it now (see the module docstring)
    return tensor


class TritonPythonModel:
    """Triton's Python backend entry point (one per model instance)."""

    def initialize(self, args: Dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # Triton runs instances in parallel; one thread each
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        seq = config.get("sequence_batching") or {}
        #: (state input, state output) pairs carried per correlation ID
        self.states: List[Tuple[str, str]] = [(s["input_name"], s["output_name"]) for s in seq.get("state", [])]
        self.control: Dict[str, str] = {}  # kind -> control input name
        for ci in seq.get("control_input", []):
            for c in ci.get("control", []):
                if c.get("kind") in _CONTROL_KINDS:
                    self.control[c["kind"]] = ci["name"]
        self.state_outputs = {o for _, o in self.states}
        self.client_outputs = [o["name"] for o in config.get("output", [])]
        self.store: Dict[Any, Dict[str, np.ndarray]] = {}  # correlation ID -> state inputs for the next request
        self.lock = threading.Lock()

    def _flag(self, request: Any, kind: str) -> bool:
        name = self.control.get(kind)
        tensor = pb_utils.get_input_tensor_by_name(request, name) if name else None
        return tensor is not None and bool(_as_numpy(tensor).any())

    def _correlation_id(self, request: Any) -> Any:
        name = self.control.get("CONTROL_SEQUENCE_CORRID")
        tensor = pb_utils.get_input_tensor_by_name(request, name) if name else None
        if tensor is not None:
            return _as_numpy(tensor).reshape(-1)[0].item()
        return request.correlation_id()

    def _feeds(self, request: Any) -> Dict[str, np.ndarray]:
        feeds = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise pb_utils.TritonModelException(f"the request has no input {name!r} (the model takes {self.inputs})")
            feeds[name] = _as_numpy(tensor)
        return feeds

    def _respond(self, request: Any, outputs: Dict[str, np.ndarray]) -> Any:
        wanted = request.requested_output_names() or self.client_outputs
        return pb_utils.InferenceResponse([_to_triton(n, outputs[n]) for n in wanted if n in outputs])

    def _run_stateful(self, request: Any) -> Any:
        feeds = self._feeds(request)
        corrid = self._correlation_id(request)
        start = self._flag(request, "CONTROL_SEQUENCE_START")
        end = self._flag(request, "CONTROL_SEQUENCE_END")
        with self.lock:
            carried: Optional[Dict[str, np.ndarray]] = None if start else self.store.get(corrid)
        for s_in, _ in self.states:
            feeds[s_in] = carried[s_in] if carried is not None else np.zeros_like(feeds[s_in])
        outputs = dict(zip(self.outputs, self.session.run(None, feeds)))
        with self.lock:
            if end:
                self.store.pop(corrid, None)
            else:
                self.store[corrid] = {s_in: outputs[s_out] for s_in, s_out in self.states}
        return self._respond(request, outputs)

    def execute(self, requests: List[Any]) -> List[Any]:
        responses: List[Any] = [None] * len(requests)
        if self.states:
            for i, request in enumerate(requests):
                try:
                    responses[i] = self._run_stateful(request)
                except Exception as e:  # one failed request answers with its error; the others run
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e)))
            return responses
        groups: Dict[Tuple, List[Tuple[int, Dict[str, np.ndarray]]]] = {}
        for i, request in enumerate(requests):
            try:
                feeds = self._feeds(request)
            except Exception as e:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e)))
                continue
            key = tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(feeds.items()))
            groups.setdefault(key, []).append((i, feeds))
        for members in groups.values():
            batch = {n: np.concatenate([f[n] for _, f in members]) for n in self.inputs}
            try:
                outputs = self.session.run(None, batch)
            except Exception as e:
                for i, _ in members:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e)))
                continue
            lo = 0
            for i, feeds in members:
                n = feeds[self.inputs[0]].shape[0]
                responses[i] = self._respond(requests[i], {k: v[lo:lo + n] for k, v in zip(self.outputs, outputs)})
                lo += n
        return responses

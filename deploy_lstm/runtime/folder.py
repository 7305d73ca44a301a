"""An export folder that runs: :func:`load` opens it, :meth:`RunnableFolder.runner` gives the
runner of any artifact it holds (what ``deploy_lstm.load(DIR)`` returns)."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import torch.utils._pytree as pytree

from deploy_lstm.errors import ArtifactError, ConfigError
from deploy_lstm.formats import folder as formats_folder
from deploy_lstm.formats.folder import ExportFolder, load_model_spec
from deploy_lstm.runtime.base import Runner

__all__ = ["RunnableFolder", "load", "RUNNER_KINDS", "RUNNER_OPTIONS"]

#: the artifact kinds a runner opens, in the order a default is looked for
RUNNER_KINDS: Tuple[str, ...] = ("onnx", "onnx-int8", "torchscript", "aoti", "executorch", "aoti-bf16", "torchscript-bf16")

_ONNX_OPTIONS = ("device", "intra_op_num_threads", "inter_op_num_threads", "session_options")
#: the keyword options each kind's runner takes
RUNNER_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "onnx": _ONNX_OPTIONS, "onnx-int8": _ONNX_OPTIONS, "torchscript": (), "aoti": (), "executorch": (),
    "aoti-bf16": (), "torchscript-bf16": (),
}


class RunnableFolder(ExportFolder):
    """An :class:`~deploy_lstm.formats.folder.ExportFolder` whose artifacts run: :meth:`runner`."""

    @classmethod
    def of(cls, folder: ExportFolder) -> "RunnableFolder":
        """``folder`` (already loaded and verified) as a runnable folder."""
        return folder if isinstance(folder, cls) else cls(folder.path, folder.manifest)

    def runner(self, kind: Optional[str] = None, **options: Any) -> Runner:
        """The runner of one artifact of this folder.

        Args:
            kind: "onnx", "onnx-int8", "torchscript", "aoti", "executorch", or a bf16 artifact,
                "aoti-bf16" or "torchscript-bf16" (float32 in and out, like their siblings); default: the artifact
                ``deploy-lstm bench DIR`` recommended for Python, else "onnx".
            **options: "onnx"/"onnx-int8": ``device`` ("cpu" or "cuda"),
                ``intra_op_num_threads``, ``inter_op_num_threads``, ``session_options``;
                the other kinds take none.

        Returns:
            A :class:`~deploy_lstm.runtime.base.Runner`: ``runner(x)``,
            ``runner(x, h0, c0, lengths)``, ``runner.run(feeds)``, ``runner.stream()``.

        Raises:
            ArtifactError: the folder has no artifact of that kind (the message lists what it has).
            ConfigError: an option the kind does not take.
            RuntimeUnavailable: ``device="cuda"`` where onnxruntime has no CUDA, or
                "executorch" where the executorch package is not installed.
        """
        if kind is None:
            kind = self.recommended("python") or "onnx"
        if kind not in RUNNER_KINDS or not self.has(kind):
            have = ", ".join(k for k in RUNNER_KINDS if self.has(k)) or "none"
            what = f"no {kind} artifact" if kind in RUNNER_KINDS else f"no artifact kind {kind!r} (kinds: {', '.join(RUNNER_KINDS)})"
            raise ArtifactError(f"{self.path} has {what}; it has: {have}. Pass one of those as kind, or re-export with it")
        unknown = sorted(set(options) - set(RUNNER_OPTIONS[kind]))
        if unknown:
            takes = ", ".join(RUNNER_OPTIONS[kind]) or "no options"
            raise ConfigError(f"the {kind} runner takes {takes}; got {', '.join(unknown)}")
        path = self.file(kind)
        if kind in ("onnx", "onnx-int8"):
            from deploy_lstm.runtime.onnx import OnnxRunner  # onnxruntime loads only when asked for

            return OnnxRunner(path, kind=kind, **options)
        if kind in ("aoti", "aoti-bf16"):
            from deploy_lstm.runtime.aoti import AotiPackage

            return AotiPackage(path)
        if kind == "executorch":
            from deploy_lstm.runtime.executorch import ExecutorchRunner  # executorch loads only when asked for

            details = self.artifacts[kind].details
            return ExecutorchRunner(path, self.config, chunk=details.get("chunk", 1), batch=details.get("batch", 1))
        from deploy_lstm.runtime.torchscript import TorchScriptRunner

        return TorchScriptRunner(path, io=self.io, tree=self.input_tree())

    def input_tree(self) -> Optional[Any]:
        """A whole model's input structure (the pytree spec of its factory's example call); None for a bare LSTM.

        Raises:
            ArtifactError: the factory's example has another number of tensors than the manifest's inputs.
        """
        if self.config is not None:
            return None
        spec = load_model_spec(self.model["factory"])
        flat, tree = pytree.tree_flatten((tuple(spec.example_inputs), dict(spec.example_kwargs or {})))
        if len(flat) != len(self.io.inputs):
            raise ArtifactError(
                f"{self.path}: the model factory's example has {len(flat)} input tensors, the manifest "
                f"{len(self.io.inputs)}; re-export the folder"
            )
        return tree


def load(path: str | os.PathLike, verify: bool = True) -> RunnableFolder:
    """Open an export folder written by ``deploy-lstm export``, ready to run.

    ``deploy_lstm.load(DIR).runner()`` runs its recommended artifact (see
    :meth:`RunnableFolder.runner`); everything else is :class:`ExportFolder`'s.

    Args:
        verify: check every artifact's size and SHA-256 against the manifest.

    Raises:
        ArtifactError: no such folder, no manifest (or one of another format or
            version), or an artifact missing or changed.
    """
    return RunnableFolder.of(formats_folder.load(path, verify=verify))

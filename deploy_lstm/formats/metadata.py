"""The metadata every artifact carries, and its one codec: :class:`ArtifactMetadata`.

Every exporter writes it and every reader reads it through this class; nobody
else spells a key.  On disk it is a flat ``{key: string}`` map (the keys are
``contract.META_*``; JSON values are JSON text inside the string), held:

* ONNX: in the model's ``metadata_props`` (onnxruntime: ``custom_metadata_map``);
* TorchScript: in the archive's extra file :data:`TORCHSCRIPT_METADATA_FILE`, as one
  JSON object of those strings (``torch.jit.load(..., _extra_files=...)``, or
  :func:`read_torchscript_metadata` without loading the model);
* AOTInductor: in the package metadata (``aoti_load_package(p).get_metadata()``),
  next to AOTInductor's own keys, which the codec ignores.

The C++ readers (``serving/cpp``) read the same strings, so the encoding is fixed:
old artifacts (same keys) decode, and what is written stays byte-for-byte what the
exporters wrote before this codec existed.

Writing::

    meta = ArtifactMetadata.describe(model, io=sig.io, exporter="dynamo", routes=routes)
    for key, value in meta.to_strings().items():
        proto.metadata_props.add(key=key, value=value)

Reading::

    meta = ArtifactMetadata.from_strings(session.get_modelmeta().custom_metadata_map, source=str(path))
    meta.config      # LSTMConfig of a bare LSTM export, else None
    meta.io          # IOSpec, or None when the artifact carries none
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

from deploy_lstm.errors import ArtifactError, ConfigError
from deploy_lstm.formats import contract, strict_json
from deploy_lstm.formats.contract import IOSpec
from deploy_lstm.nn.config import LSTMConfig
from deploy_lstm.nn.lstm import LSTM
from deploy_lstm.version import __version__

__all__ = ["ArtifactMetadata", "TORCHSCRIPT_METADATA_FILE", "INT8_DYNAMIC", "META_PRECISION", "decode_config", "read_torchscript_metadata", "read_onnx_metadata"]

#: the extra file inside a TorchScript archive holding its metadata (C++: kTorchScriptMetadataFile)
TORCHSCRIPT_METADATA_FILE = "deploy_lstm_config.json"

#: the value of ``contract.META_QUANTIZED`` on an ONNX model quantized by ``quantize_int8``
INT8_DYNAMIC = "int8-dynamic"

#: the key of a reduced-precision artifact's arithmetic ("bf16"): its LSTMs run in bfloat16
#: behind a float32 boundary (absent: the weights' own dtype, as before)
META_PRECISION = "deploy_lstm.precision"

# LSTMConfig's fields and the JSON types each may hold
_CONFIG_TYPES: Dict[str, Any] = {
    "input_size": int, "hidden_size": int, "num_layers": int, "bias": bool, "batch_first": bool,
    "dropout": float, "bidirectional": bool, "proj_size": int, "cell": str,
}


def decode_config(value: Any, where: str) -> LSTMConfig:
    """An ``LSTMConfig`` from its decoded JSON object, every field's type checked.

    Raises:
        ArtifactError: not an object, an unknown or missing field, or a field of the wrong type.
    """
    if not isinstance(value, dict):
        raise ArtifactError(f"{where}: an LSTM configuration must be an object, got {strict_json.JSON_TYPE_NAMES.get(type(value), type(value).__name__)}")
    for key in value:
        if key in _CONFIG_TYPES:
            strict_json.field(value, key, _CONFIG_TYPES[key], where)
    try:
        return LSTMConfig.from_dict(value)
    except ConfigError as e:
        raise ArtifactError(f"{where}: {e}") from None


def _config_json(config: LSTMConfig, where: str) -> str:
    # exactly LSTMConfig.to_json(), but strict: a NaN dropout is refused, not written
    return strict_json.dumps(dataclasses.asdict(config), where, sort_keys=True)


@dataclasses.dataclass(frozen=True)
class ArtifactMetadata:
    """What an artifact says about itself.  Every field is optional when read: an
    artifact of another tool, or of an older version, may lack any of them."""

    version: Optional[str] = None  # deploy_lstm version that wrote it (META_VERSION)
    torch: Optional[str] = None  # torch version that wrote it (META_TORCH)
    config: Optional[LSTMConfig] = None  # a bare LSTM's configuration (META_CONFIG)
    lstms: Optional[Dict[str, LSTMConfig]] = None  # a whole model's {submodule: configuration} (META_LSTMS)
    io: Optional[IOSpec] = None  # the flat graph inputs/outputs (META_IO)
    exporter: Optional[str] = None  # ONNX: "dynamo" or "torchscript" (META_EXPORTER)
    routes: Optional[Dict[str, str]] = None  # {submodule: "native" | "scan" | "loop" | "fused"} (META_ROUTES)
    quantized: Optional[str] = None  # INT8_DYNAMIC on a quantized ONNX model (META_QUANTIZED)
    precision: Optional[str] = None  # "bf16": LSTMs in bfloat16, float32 boundary (META_PRECISION)

    @classmethod
    def describe(
        cls, model: nn.Module, *, io: Optional[IOSpec] = None, exporter: Optional[str] = None,
        routes: Optional[Mapping[str, str]] = None, precision: Optional[str] = None,
    ) -> "ArtifactMetadata":
        """What an exporter writes for ``model``, made by this deploy_lstm and torch.

        A bare ``deploy_lstm.LSTM`` gets ``config``; any other model ``lstms``, the
        configuration of each ``deploy_lstm.LSTM`` inside by submodule name.
        """
        if isinstance(model, LSTM):
            config, lstms = LSTMConfig.of(model), None
        else:
            config, lstms = None, {n: LSTMConfig.of(m) for n, m in model.named_modules() if isinstance(m, LSTM)}
        return cls(
            version=__version__, torch=torch.__version__, config=config, lstms=lstms, io=io, exporter=exporter,
            routes=dict(routes) if routes is not None else None, precision=precision,
        )

    # -- encoding -----------------------------------------------------------------------

    def to_strings(self) -> Dict[str, str]:
        """The flat ``{contract.META_* key: string}`` map, set fields only.

        Raises:
            ArtifactError: a non-finite number in a configuration (C++ cannot read it).
        """
        where = "artifact metadata"
        out: Dict[str, str] = {}
        if self.io is not None:
            out[contract.META_IO] = self.io.to_json()
        for key, text in ((contract.META_VERSION, self.version), (contract.META_TORCH, self.torch), (contract.META_EXPORTER, self.exporter)):
            if text is not None:
                out[key] = text
        if self.routes is not None:
            out[contract.META_ROUTES] = strict_json.dumps(self.routes, where, sort_keys=True)
        if self.config is not None:
            out[contract.META_CONFIG] = _config_json(self.config, where)
        if self.lstms is not None:
            configs = {name: dataclasses.asdict(c) for name, c in self.lstms.items()}
            out[contract.META_LSTMS] = strict_json.dumps(configs, where, sort_keys=True)
        if self.quantized is not None:
            out[contract.META_QUANTIZED] = self.quantized
        if self.precision is not None:
            out[META_PRECISION] = self.precision
        return out

    def to_json(self) -> str:
        """The TorchScript extra file: one JSON object of :meth:`to_strings`."""
        return strict_json.dumps(self.to_strings(), "artifact metadata", sort_keys=True)

    # -- decoding -----------------------------------------------------------------------

    @classmethod
    def from_strings(cls, strings: Mapping[str, str], source: str = "artifact") -> "ArtifactMetadata":
        """Decode the flat map an artifact carries (keys it does not know are ignored).

        Args:
            strings: ``metadata_props``, ``custom_metadata_map``, AOTInductor's
                ``get_metadata()``, or the TorchScript extra file's object.
            source: the artifact, for messages.

        Raises:
            ArtifactError: a known key whose value is not a string or does not decode.
        """
        def text(key: str) -> Optional[str]:
            value = strings.get(key)
            if value is not None and not isinstance(value, str):
                raise ArtifactError(f"{source}: metadata {key!r} must be a string, got {type(value).__name__}")
            return value

        def decoded(key: str) -> Any:
            value = text(key)
            return None if value is None else strict_json.loads(value, f"{source}: metadata {key!r}")

        config = decoded(contract.META_CONFIG)
        lstms = decoded(contract.META_LSTMS)
        if lstms is not None and not isinstance(lstms, dict):
            raise ArtifactError(f"{source}: metadata {contract.META_LSTMS!r} must be an object of configurations")
        routes = decoded(contract.META_ROUTES)
        if routes is not None and not (isinstance(routes, dict) and all(isinstance(v, str) for v in routes.values())):
            raise ArtifactError(f"{source}: metadata {contract.META_ROUTES!r} must be an object of strings")
        io = decoded(contract.META_IO)
        return cls(
            version=text(contract.META_VERSION),
            torch=text(contract.META_TORCH),
            config=None if config is None else decode_config(config, f"{source}: metadata {contract.META_CONFIG!r}"),
            lstms=None if lstms is None else {n: decode_config(c, f"{source}: metadata {contract.META_LSTMS!r}[{n!r}]") for n, c in lstms.items()},
            io=None if io is None else IOSpec.from_dict(io, f"{source}: metadata {contract.META_IO!r}"),
            exporter=text(contract.META_EXPORTER),
            routes=routes,
            quantized=text(contract.META_QUANTIZED),
            precision=text(META_PRECISION),
        )

    @classmethod
    def from_json(cls, text: str, source: str = "artifact") -> "ArtifactMetadata":
        """Decode the TorchScript extra file (:meth:`to_json`).

        Raises:
            ArtifactError: not strict JSON, not an object, or a value that does not decode.
        """
        strings = strict_json.loads(text, f"{source}: {TORCHSCRIPT_METADATA_FILE}")
        if not isinstance(strings, dict):
            raise ArtifactError(f"{source}: {TORCHSCRIPT_METADATA_FILE} must hold a JSON object")
        return cls.from_strings(strings, source)


def read_torchscript_metadata(path: str | os.PathLike) -> Optional[ArtifactMetadata]:
    """The metadata of a TorchScript archive, read without loading the model; None when it has none.

    Raises:
        ArtifactError: the file is not a TorchScript archive, or its metadata does not decode.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.split("/")[1:] == ["extra", TORCHSCRIPT_METADATA_FILE]]
            if not names:
                return None
            text = archive.read(names[0]).decode("utf-8")
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise ArtifactError(f"cannot read the TorchScript archive {path}: {e}") from None
    return ArtifactMetadata.from_json(text, str(path))


def read_onnx_metadata(path: str | os.PathLike) -> ArtifactMetadata:
    """The metadata of an ONNX file, read without its weights (needs ``onnx``).

    Raises:
        ArtifactError: the file is not an ONNX model, or its metadata does not decode.
    """
    import onnx  # only here: importing deploy_lstm.formats does not load onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError, OSError, ... for a file that is not a model
        raise ArtifactError(f"cannot read the ONNX model {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return ArtifactMetadata.from_strings({p.key: p.value for p in proto.metadata_props}, str(path))

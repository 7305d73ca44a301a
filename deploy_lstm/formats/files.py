"""Writing files safely: a target that can be written, and atomic replacement with sidecars."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence
from deploy_lstm.errors import ExportError


def check_target(path: Path) -> None:
    """``path`` is a file path in an existing, writable folder."""
    if path.is_dir():
        raise ExportError(f"cannot write to {path}: it is a directory; give a file path such as {path / 'model.onnx'}")
    if not path.parent.is_dir():
        raise ExportError(f"cannot write to {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ExportError(f"cannot write to {path}: folder {path.parent} is not writable")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, sidecars: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a fresh path to write ``path``'s content to; move it into place on success.

    The yielded file does not exist yet, in a private folder beside ``path`` (same
    file system, so the final ``os.replace`` is atomic).  Whoever writes it creates
    it, so it gets the usual permissions.  Files named in ``sidecars`` (e.g.
    ``model.onnx.data``) that were written beside it are moved first.  On an error
    nothing is moved and the old ``path`` stays as it was.
    """
    path = Path(path)
    check_target(path)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        yield tmp
        if not tmp.is_file():
            raise ExportError(f"internal: nothing was written for {path}")
        for name in sidecars:
            if (tmpdir / name).exists():
                os.replace(tmpdir / name, path.parent / name)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

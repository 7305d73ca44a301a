"""A griffe extension (mkdocs.yml: mkdocstrings' python handler, ``extensions``): Sphinx roles as code.

The docstrings cross-reference with Sphinx roles (``:func:`export_onnx```, ``:class:`~x.OnnxLSTM```),
which mkdocstrings renders as raw text. This shows each as inline code holding the name (``~``
keeps the last component, as Sphinx does), without touching the docstrings themselves.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _code(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)

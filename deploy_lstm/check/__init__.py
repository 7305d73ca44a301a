"""check: proving artifacts equal to the eager model and to ``torch.nn.LSTM``.

:mod:`.harness` is the one harness everything that checks numbers uses (validation, the
Triton repository writer, the benchmark): random inputs at other shapes, the reference
models, artifacts run through the runtime's runners, the comparison; :mod:`.tolerance`
holds every tolerance rule (float32, float64, layer norm, int8, bf16); :mod:`.validate` runs
every artifact of an export against the references and reports (``ValidationReport``);
:mod:`.int8` measures int8 against float32 and says whether it pays; :mod:`.bf16` measures a
bf16 artifact against float32 and times it against its float32 sibling.
"""

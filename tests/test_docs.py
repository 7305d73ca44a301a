"""Docs that cannot rot: every example in README.md and docs/**.md runs here, and the site builds.

The convention (README "Docs examples" of the team; docs/development.md for contributors):

- every ```python and ```bash block of a page runs, in page order, in a fresh temporary directory
  per page; the python blocks of a page share one namespace; bash blocks run with
  ``bash -euo pipefail`` in the same directory, with this interpreter's bin directory first on PATH;
- a process a bash block starts in the background (``&``) is killed when the page's last block
  has run (each bash block runs in a process group of its own; the group is killed);
- a block preceded by ``<!-- not-run: REASON -->`` is reported as skipped with that reason, and the
  reason may not be empty; ```text, ```cpp, ```cmake blocks are shown, never run.

One test per block (ids ``PAGE:LINE-LANG``), so a failure names its block and a skip shows its
reason. A block asked for alone (``-k``) first runs the page's blocks before it.

Then ``mkdocs build --strict`` (broken links, anchors, snippets and missing references fail it),
and every name of ``deploy_lstm.__all__`` has an entry in the API reference.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import signal
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
RUN = {"python", "bash"}  # the languages that are executed; every other fence is shown only
NOT_RUN = re.compile(r"<!--\s*not-run:(.*?)-->", re.S)
BLOCK_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    source: str
    not_run: Optional[str]  # the reason, when marked; "" is a marked block without a reason

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}-{self.lang}"


def pages() -> List[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(path: Path, root: Path = ROOT) -> List[Block]:
    """The fenced code blocks of one Markdown page, with the not-run mark that precedes each."""
    page = path.relative_to(root).as_posix()
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    found: List[Block] = []
    for i, tok in enumerate(tokens):
        if tok.type != "fence":
            continue
        lang = tok.info.strip().split(" ")[0].lower()
        prev = tokens[i - 1] if i > 0 else None
        mark = NOT_RUN.search(prev.content) if prev is not None and prev.type == "html_block" else None
        reason = mark.group(1).strip() if mark else None
        found.append(Block(page, tok.map[0] + 1, lang, tok.content, reason))
    return found


ALL_BLOCKS = [b for p in pages() for b in blocks_of(p)]
RUNNABLE = [b for b in ALL_BLOCKS if b.lang in RUN]


@dataclasses.dataclass
class PageRun:
    """One page's shared state: its directory, its python namespace, its background processes."""

    cwd: Path
    namespace: Dict[str, Any]
    groups: List[int] = dataclasses.field(default_factory=list)
    done: List[int] = dataclasses.field(default_factory=list)  # lines of the blocks already run
    failed: Optional[str] = None

    def kill(self) -> None:
        for pgid in self.groups:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.groups.clear()


def run_python(block: Block, state: PageRun) -> None:
    code = compile(block.source, f"{block.page}:{block.line}", "exec")
    old = os.getcwd()
    os.chdir(state.cwd)
    try:
        exec(code, state.namespace)  # noqa: S102 -- the page's own example, run as a reader runs it
    finally:
        os.chdir(old)


def run_bash(block: Block, state: PageRun) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = state.cwd / f".block-{block.line}.log"
    with open(log, "wb") as out:  # a file, not a pipe: a background process may keep it open
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.source], cwd=state.cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        state.groups.append(proc.pid)  # its own process group: '&' children are killed with it
        try:
            code = proc.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            state.kill()
            raise AssertionError(f"{block.id} ran over {BLOCK_TIMEOUT_S} s:\n{log.read_text(errors='replace')}")
    if code != 0:
        raise AssertionError(f"{block.id} exited {code}:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory):
    runs: Dict[str, PageRun] = {}
    yield runs, tmp_path_factory
    for state in runs.values():
        state.kill()


def _run(block: Block, state: PageRun) -> None:
    if block.not_run is not None:
        return
    try:
        (run_python if block.lang == "python" else run_bash)(block, state)
    except BaseException:
        state.failed = block.id
        raise
    finally:
        state.done.append(block.line)


def _param(block: Block):  # a bash block starts processes (the CLI, a server): an end-to-end test
    return pytest.param(block, id=block.id, marks=[pytest.mark.slow] if block.lang == "bash" else [])


@pytest.mark.parametrize("block", [_param(b) for b in RUNNABLE])
def test_example(block: Block, page_runs) -> None:
    runs, factory = page_runs
    if block.not_run is not None:
        assert block.not_run, f"{block.id}: '<!-- not-run: REASON -->' needs its reason"
        pytest.skip(f"not-run: {block.not_run}")
    state = runs.get(block.page)
    if state is None:
        state = runs[block.page] = PageRun(factory.mktemp(re.sub(r"\W", "_", block.page)), {"__name__": "__main__"})
    if state.failed:
        pytest.fail(f"an earlier example of the page failed: {state.failed}")
    page_blocks = [b for b in RUNNABLE if b.page == block.page]
    for before in page_blocks:  # a block asked for alone runs after the ones it builds on
        if before.line >= block.line:
            break
        if before.line not in state.done:
            _run(before, state)
    try:
        _run(block, state)
    finally:
        if block is page_blocks[-1] or state.failed:
            state.kill()  # background processes end with their page


def test_not_run_marks_have_reasons() -> None:
    """A not-run mark without its reason is refused, whatever the block's language."""
    empty = [b.id for b in ALL_BLOCKS if b.not_run == ""]
    assert not empty, f"'<!-- not-run: REASON -->' without a reason at {empty}"
    assert [b for b in ALL_BLOCKS if b.lang in RUN], "no runnable example found: the collector lost them"


def test_collector_reads_marks_and_languages(tmp_path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\nx = 1\n```\n\n<!-- not-run: needs a CUDA device -->\n```bash\nnvidia-smi\n```\n\n"
                    "<!-- not-run: -->\n```bash\ntrue\n```\n\n```text\nshown only\n```\n", encoding="utf-8")
    got = [(b.line, b.lang, b.not_run) for b in blocks_of(page, root=tmp_path)]
    assert got == [(3, "python", None), (8, "bash", "needs a CUDA device"), (13, "bash", ""), (17, "text", None)]


def test_readme_links_resolve() -> None:
    """The README is read on its own (on GitHub, in the sdist): its relative links name files that exist."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "no relative link found: the pattern lost them"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


# --- the site ---------------------------------------------------------------------------------


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", DISABLE_MKDOCS_2_WARNING="true")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=config.parent)


def site_once(tmp_path_factory) -> Path:
    """The site built from the repository with --strict, once per session (test_docs_site serves it)."""
    site = tmp_path_factory.getbasetemp() / "docs-site"
    if not (site / "index.html").exists():
        pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
        done = mkdocs_build(ROOT / "mkdocs.yml", site)
        assert done.returncode == 0, done.stdout + done.stderr
    return site


@pytest.mark.slow
def test_site_builds_strict(tmp_path_factory) -> None:
    """What CI runs (`mkdocs build --strict`): the reference pages and charts are in the site."""
    site = site_once(tmp_path_factory)
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("export", "validate", "info", "bench", "serve", "triton"):
        assert f"deploy-lstm {command}" in cli
    assert "--max-request-bytes" in cli  # an option of serve, from the parser itself
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    import deploy_lstm

    for name in deploy_lstm.__all__:  # mkdocstrings gives each entry an anchor named by its path
        assert re.search(rf'id="deploy_lstm\.[\w.]*\b{re.escape(name)}"', api), name
    assert (site / "benchmarks" / "results" / "results.png").stat().st_size > 0


@pytest.mark.slow
def test_broken_link_fails_the_strict_build(tmp_path) -> None:
    """The build is a check: with this repository's mkdocs.yml, a link to a missing page fails it.

    (The API page and the generated CLI page are stubs in the copy, with the CLI page's headings, so
    these builds skip mkdocstrings and torch's import: seconds.)
    """
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    for keep in ("deploy_lstm", "benchmarks"):
        (copy / keep).symlink_to(ROOT / keep)
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "docs" / "reference" / "api.md").write_text("# Python API reference\n\n## Serving\n", encoding="utf-8")
    commands = "".join(f"## `deploy-lstm {c}`\\n\\n" for c in ("export", "validate", "info", "bench", "serve", "triton"))
    (copy / "docs" / "scripts" / "gen_pages.py").write_text(  # the CLI page's headings, without importing torch
        f"import mkdocs_gen_files\nfrom pathlib import Path\n"
        f"with mkdocs_gen_files.open('reference/cli.md', 'w') as f:\n    f.write('# CLI\\n\\n{commands}')\n"
        f"for chart in Path('benchmarks/results').rglob('*.png'):\n"  # the charts, as the real script copies them
        f"    with mkdocs_gen_files.open(chart.as_posix(), 'wb') as f:\n        f.write(chart.read_bytes())\n",
        encoding="utf-8")
    ok = mkdocs_build(copy / "mkdocs.yml", tmp_path / "ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr  # the copy builds as it is
    page = copy / "docs" / "guides" / "module.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nSee [nowhere](no-such-page.md).\n", encoding="utf-8")
    done = mkdocs_build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0 and "no-such-page.md" in done.stdout + done.stderr, done.stdout + done.stderr


# --- the API reference ------------------------------------------------------------------------

API_PAGE = ROOT / "docs" / "reference" / "api.md"


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_public_name_has_a_reference_entry() -> None:
    """Each name of deploy_lstm.__all__ is documented by a `::: path` entry naming that very object."""
    import deploy_lstm

    entries = re.findall(r"^::: ([\w.]+)\s*$", API_PAGE.read_text(encoding="utf-8"), re.M)
    documented = [_resolve(path) for path in entries]  # every entry must resolve, too
    missing = []
    for name in deploy_lstm.__all__:
        obj = getattr(deploy_lstm, name)
        if isinstance(obj, str):
            if not any(path.endswith("." + name) for path in entries):
                missing.append(name)
        elif not any(obj is d for d in documented):
            missing.append(name)
    assert not missing, f"no entry in docs/reference/api.md for {missing}"

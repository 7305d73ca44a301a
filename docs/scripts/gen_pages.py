"""Pages made at build time by mkdocs-gen-files (mkdocs.yml: plugins.gen-files).

- ``reference/cli.md``: the CLI reference, rendered from ``deploy_lstm.cli.build_parser()``, the
  parser ``deploy-lstm`` itself runs, so a flag added to the code appears here with its help text.
- ``benchmarks/results/**.png``: the committed benchmark charts, copied into the site as built (the
  pages link them under that path; nothing is copied into docs/ in the repository).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
os.environ["COLUMNS"] = "100"  # argparse wraps usage lines at $COLUMNS: the same page on every machine


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    metavar = ""
    if action.nargs != 0:
        if isinstance(action.metavar, str):
            metavar = " " + action.metavar
        elif action.choices:
            metavar = " {" + ",".join(map(str, action.choices)) + "}"
        else:
            metavar = " " + action.dest.upper()
    return ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.required:
        return ""
    return f"`{action.default}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _command(name: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    lines = [f"## `deploy-lstm {name}`", "", _cell(summary).capitalize() + ".", "", "```text",
             parser.format_usage().strip(), "```", "",
             "| argument | default | what it does |", "|---|---|---|"]
    for action in parser._actions:  # the parser's own list: every argument, groups included
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        lines.append(f"| {_flags(action)} | {_default(action)} | {_cell(help_text)} |")
    if parser.epilog:
        lines += ["", "```text", parser.epilog.strip("\n"), "```"]
    return lines + [""]


def cli_page() -> str:
    from deploy_lstm.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    lines = ["# CLI reference", "",
             "Generated from `deploy_lstm.cli.build_parser()` when the site is built; "
             "`deploy-lstm COMMAND --help` prints the same.", "",
             f"{_cell(parser.description or '')}", "", "| command | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#deploy-lstm-{name}) | {_cell(summaries.get(name, ''))} |" for name in sub.choices]
    lines += ["", "Exit codes: 0 every check passed, 1 a check failed, 2 bad input (one line on stderr).", ""]
    for name, command in sub.choices.items():
        lines += _command(name, command, summaries.get(name, ""))
    return "\n".join(lines)


with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_page())
mkdocs_gen_files.set_edit_path("reference/cli.md", "../../deploy_lstm/cli.py")

for chart in sorted((ROOT / "benchmarks" / "results").rglob("*.png")):
    with mkdocs_gen_files.open(chart.relative_to(ROOT).as_posix(), "wb") as out:
        out.write(chart.read_bytes())

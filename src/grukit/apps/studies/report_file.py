"""COMPARISON.md (and RESULTS.md) as named sections, so that each part of ``grukit compare`` (each
benchmark script) rewrites its own part.

A section is the text between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``. Writing one
keeps every other section as it was; the file is replaced in one step (written to a temporary
file beside it, then renamed), so a kill never leaves half a report.
"""

from __future__ import annotations

import os
import re

TITLE = "# RNN vs LSTM vs GRU, measured\n"


def write_section(path: str, name: str, text: str, order: tuple = ("tasks", "memory"), title: str = TITLE) -> None:
    """Put ``text`` in section ``name`` of the Markdown file at ``path`` (created if missing, headed
    by ``title``); sections are kept in ``order``."""
    sections = read_sections(path)
    sections[name] = text.strip("\n")
    names = [n for n in order if n in sections] + [n for n in sections if n not in order]
    document = title + "".join(f"\n<!-- begin {n} -->\n{sections[n]}\n<!-- end {n} -->\n" for n in names)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        f.write(document)
    os.replace(temporary, path)


def read_sections(path: str) -> dict:
    """name -> text of every section in the file (empty if the file does not exist)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        document = f.read()
    pattern = re.compile(r"<!-- begin (\S+) -->\n(.*?)\n<!-- end \1 -->", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(document)}

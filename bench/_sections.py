"""A benchmark's own section of a Markdown report, between two HTML comment markers.

Each benchmark that writes to docs/benchmarks.md owns one section and rewrites only it,
so a run of one benchmark never touches what another wrote or what people wrote by hand.
"""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, begin: str, end: str, lines: list[str]) -> None:
    """Put ``lines`` between the markers ``begin`` and ``end`` in ``path``: in place of
    the section already there, or appended (with its markers) when there is none."""
    body = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + body + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)

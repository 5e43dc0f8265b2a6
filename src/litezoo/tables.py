"""Plain-text tables for people: the one formatter the CLI and the analysis reports share.

Machine-readable output is ``--json`` (the data itself); these tables are only for reading in a terminal.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    # Python decodes an undecodable file-name byte 0xNN as the lone surrogate U+DCNN (PEP 383): show it as the
    # byte it was, '\xNN'. Any other lone surrogate becomes its code point, '\uDXXX', as plain text.
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    r"""``text`` without lone surrogates, so it can be encoded as UTF-8 (JSON, fonts, HTML).

    A file name that is not valid UTF-8 reaches Python as ``'run\udcff'``; it is shown as ``'run\xff'``.
    """
    return _SURROGATE.sub(_escape_surrogate, text)


def format_table(rows: list[dict[str, Any]], columns: list[str], align_right: set[str] | None = None) -> str:
    """``rows`` as a table with a header and a dashed rule; cells are ``str(row.get(column, ""))``.

    Columns named in ``align_right`` (numbers) are right-aligned, the others left-aligned; trailing spaces are
    stripped so the text diffs cleanly.
    """
    align_right = align_right or set()
    cells = [[printable(str(r.get(c, ""))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def fmt(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if c in align_right else v.ljust(w) for v, w, c in zip(values, widths, columns)
        ).rstrip()

    lines = [fmt(columns), fmt(["-" * w for w in widths])]
    lines += [fmt(row) for row in cells]
    return "\n".join(lines)


__all__ = ["format_table", "printable"]

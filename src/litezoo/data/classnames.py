"""Human-readable class names for image folders named by id (e.g. Imagenette's WordNet ids ``n01440764``).

Where names come from, first match wins:

1. ``class_names=PATH`` given to :func:`litezoo.data.open_dataset` (config ``data.class_names``);
2. ``classes.txt`` at the dataset root;
3. the shipped ImageNet-1k table, when every class folder is an ImageNet WordNet id;
4. else the folder names themselves.

A names file has either ``folder_name<TAB or spaces>display name`` lines (any subset of the folders; the
others keep their folder name), or one display name per line in sorted-folder order (exactly one per
folder). Blank lines and lines starting with ``#`` are ignored. Names change only what is shown: labels
stay the indices of the sorted folder names, and the decode cache does not depend on them.
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

from litezoo.data.errors import DatasetError

CLASSES_FILE = "classes.txt"


@functools.lru_cache(maxsize=1)
def _imagenet_table() -> tuple[tuple[str, str], ...]:
    """((wnid, name), ...) of ImageNet-1k in the standard index order (package data imagenet_classes.tsv)."""
    text = resources.files("litezoo.data").joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            index, wnid, name, _lemmas = line.split("\t")
            if int(index) != len(rows):
                raise RuntimeError(f"imagenet_classes.tsv: row {len(rows)} has index {index}")  # broken install
            rows.append((wnid, name))
    return tuple(rows)


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in the standard index order (0 'tench' ... 999 'toilet tissue')."""
    return [name for _, name in _imagenet_table()]


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in the standard index order (0 'n01440764' ... 999 'n15075141')."""
    return [wnid for wnid, _ in _imagenet_table()]


def imagenet_name(wnid: str) -> str | None:
    """The ImageNet-1k class name of a WordNet id (``imagenet_name('n02099601') == 'golden retriever'``)."""
    return _wnid_names().get(wnid)


@functools.lru_cache(maxsize=1)
def _wnid_names() -> dict[str, str]:
    return dict(_imagenet_table())


def read_class_names(path: str | os.PathLike, folders: list[str]) -> list[str]:
    """Display names for the sorted class ``folders`` from a names file (format in the module doc)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"class-names file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the class-names file {path} ({exc})") from None
    lines = [line.strip() for line in raw.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise DatasetError(f"{path} lists no class names")
    known = set(folders)
    pairs = [line.split(None, 1) for line in lines]
    if all(len(p) == 2 and p[0] in known for p in pairs):  # "folder<whitespace>display name" lines
        mapping = {folder: name.strip() for folder, name in pairs}
        return [mapping.get(f, f) for f in folders]
    if len(lines) != len(folders):
        raise DatasetError(
            f"{path}: {len(lines)} name(s) for {len(folders)} class folder(s); give one name per line in sorted "
            "folder order, or 'folder_name<TAB>display name' lines"
        )
    return lines


def display_names(root: Path, folders: list[str], class_names: str | os.PathLike | None) -> list[str]:
    """The names shown for ``folders`` (see the module doc); duplicates get their folder name appended."""
    if class_names is not None:
        names = read_class_names(class_names, folders)
    elif (root / CLASSES_FILE).is_file():
        names = read_class_names(root / CLASSES_FILE, folders)
    elif all(imagenet_name(f) is not None for f in folders):
        names = [imagenet_name(f) for f in folders]
    else:
        return list(folders)
    # two classes must never share a name (ImageNet itself has two 'crane's and two 'maillot's)
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    return [f"{n} ({f})" if seen[n] > 1 else n for n, f in zip(names, folders)]

"""What a new user gives litezoo: class-name files, WordNet-id folders, incomplete CIFAR folders, split-less folders."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litezoo.cli.main import main as cli_main
from litezoo.data import DatasetError, imagenet_class_names, imagenet_name, imagenet_wnids, open_dataset
from litezoo.data.cifar import CIFAR10_CLASSES


def folder(root: Path, classes: list[str], splits=("train",), n=2) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


# Known facts of ImageNet-1k (index, WordNet id, name), as every framework numbers them.
IMAGENET_FACTS = [
    (0, "n01440764", "tench"),
    (1, "n01443537", "goldfish"),
    (207, "n02099601", "golden retriever"),
    (281, "n02123045", "tabby"),
    (285, "n02124075", "Egyptian cat"),
    (409, "n02708093", "analog clock"),
    (517, "n03126707", "crane"),
    (999, "n15075141", "toilet tissue"),
]


@pytest.mark.parametrize("index, wnid, name", IMAGENET_FACTS)
def test_imagenet_table_known_entries(index, wnid, name):
    assert imagenet_wnids()[index] == wnid
    assert imagenet_class_names()[index] == name
    assert imagenet_name(wnid) == name


def test_imagenet_table_shape():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000
    assert wnids == sorted(wnids)  # the standard order is the sorted WordNet ids
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    assert imagenet_name("n99999999") is None


def test_imagenette_folders_show_imagenet_names(tmp_path):
    root = folder(tmp_path / "imagenette", ["n01440764", "n02099601", "n03126707", "n02012849"])
    ds = open_dataset(root, cache_dir=tmp_path / "c")
    # sorted folders: n01440764 tench, n02012849 crane (bird), n02099601 golden retriever, n03126707 crane
    assert ds.class_folders == ["n01440764", "n02012849", "n02099601", "n03126707"]
    assert ds.classes == ["tench", "crane (n02012849)", "golden retriever", "crane (n03126707)"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # labels unchanged: indices of the sorted folders
    assert set(ds.class_counts()) == set(ds.classes)  # no two classes merged under one name


def test_classes_txt_mapping_and_list_forms(tmp_path):
    root = folder(tmp_path / "ds", ["c0", "c1", "c2"])
    (root / "classes.txt").write_text("# display names\nc2\tthird class\nc0  first one\n")
    assert open_dataset(root, cache_dir=tmp_path / "c").classes == ["first one", "c1", "third class"]
    (root / "classes.txt").write_text("alpha\nbeta gamma\ndelta\n")  # one per line, sorted-folder order
    ds = open_dataset(root, cache_dir=tmp_path / "c")
    assert ds.classes == ["alpha", "beta gamma", "delta"] and not ds.decoded  # names never rebuild the cache
    explicit = tmp_path / "names.txt"
    explicit.write_text("c1 middle\n")
    assert open_dataset(root, cache_dir=tmp_path / "c", class_names=explicit).classes == ["c0", "middle", "c2"]


def test_class_names_errors(tmp_path):
    root = folder(tmp_path / "ds", ["c0", "c1", "c2"])
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError, match=r"2 name\(s\) for 3 class folder"):
        open_dataset(root, cache_dir=tmp_path / "c", class_names=tmp_path / "two.txt")
    with pytest.raises(DatasetError, match="class-names file not found"):
        open_dataset(root, cache_dir=tmp_path / "c", class_names=tmp_path / "missing.txt")


def test_cli_data_info_uses_class_names(tmp_path, capsys):
    root = folder(tmp_path / "ds", ["x", "y"], splits=("train", "test"), n=1)
    (tmp_path / "n.txt").write_text("x ex\ny why\n")
    code = cli_main(["data", "info", str(root), "--cache-dir", str(tmp_path / "c"), "--class-names",
                     str(tmp_path / "n.txt"), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["classes"] for s in info["splits"]] == [["ex", "why"], ["ex", "why"]]
    assert info["splits"][0]["class_folders"] == ["x", "y"]


@pytest.mark.parametrize("layout", ["empty", "class-folders-only", "loose-files"])
def test_cli_data_info_without_split_folders_exits_2_with_a_message(tmp_path, capsys, layout):
    root = tmp_path / "ds"
    root.mkdir()
    if layout == "class-folders-only":
        folder(tmp_path / "tmp", ["cat", "dog"])
        (tmp_path / "tmp/train").rename(root / "x")
        root = root / "x"  # root/cat/*.png, root/dog/*.png
    elif layout == "loose-files":
        Image.new("RGB", (4, 4)).save(root / "a.png")
    code = cli_main(["data", "info", str(root), "--cache-dir", str(tmp_path / "c")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and str(root) in err
    expected = "looks like a single split" if layout == "class-folders-only" else "has no train/, test/, val/ or valid/"
    assert expected in err
    # the same message `data show` gives
    assert cli_main(["data", "show", str(root), "--cache-dir", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.strip().split("error: ", 1)[1] == err.split("error: ", 1)[1]


def _cifar_py(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        blob = {b"labels": [1, 2], b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(blob, protocol=2))
    names = [n.encode() for n in CIFAR10_CLASSES]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))


@pytest.mark.parametrize("missing", ["data_batch_3", "test_batch"])
def test_cifar_folder_with_a_missing_batch_names_it(tmp_path, capsys, missing):
    batches = tmp_path / "cifar-10-batches-py"
    _cifar_py(batches)
    (batches / missing).unlink()
    for split in ("train", "test"):  # whichever split is opened, the incomplete folder is named
        with pytest.raises(DatasetError) as info:
            open_dataset(batches, split, cache_dir=tmp_path / "c")
        message = str(info.value)
        assert f"missing CIFAR-10 file(s) {missing}" in message and "Errno" not in message
        assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta" in message
    assert cli_main(["data", "info", str(tmp_path), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert missing in err and "Errno" not in err and err.count("\n") == 1


def test_config_field_data_class_names(tmp_path):
    """`data.class_names` is a run-config key (the trainer passes it to open_dataset as class_names=)."""
    from litezoo.config import RunConfig, apply_overrides

    assert RunConfig().data.class_names is None
    cfg = apply_overrides(RunConfig(), {"data.class_names": str(tmp_path / "names.txt")})
    assert cfg.data.class_names == str(tmp_path / "names.txt")


def test_cifar_class_names_file(tmp_path):
    batches = tmp_path / "cifar-10-batches-py"
    _cifar_py(batches)
    assert open_dataset(batches, "test", cache_dir=tmp_path / "c").classes == CIFAR10_CLASSES
    (tmp_path / "fr.txt").write_text("airplane avion\nautomobile voiture\n")
    ds = open_dataset(batches, "test", cache_dir=tmp_path / "c", class_names=tmp_path / "fr.txt")
    assert ds.classes[:3] == ["avion", "voiture", "bird"] and ds.class_folders == CIFAR10_CLASSES

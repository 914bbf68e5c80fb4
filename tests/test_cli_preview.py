"""`dali-cutmix preview` and the CLI's error contract (one line on stderr, exit code 2)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import write_jpeg_tree
from PIL import Image

from dali_cutmix.cli import main
from dali_cutmix.errors import UserError


def test_preview_writes_a_png_grid(jpeg_tree, tmp_path, capsys, device):
    out = tmp_path / "grid.png"
    assert main(["preview", "--data", str(jpeg_tree), "--out", str(out), "--count", "6", "--crop", "48",
                 "--device", device]) == 0
    image = np.asarray(Image.open(out))
    assert image.ndim == 3 and image.shape[0] > 2 * 48 and image.shape[1] > 4 * 48
    red = (image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)
    assert red.sum() > 20, "boxes are outlined in red"
    assert "wrote" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_preview_of_a_missing_folder_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dali_cutmix.cli", "preview", "--data", str(tmp_path / "nope"),
                             "--out", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_a_bad_option_value_exits_2(jpeg_tree, tmp_path):
    result = subprocess.run([sys.executable, "-m", "dali_cutmix.cli", "preview", "--data", str(jpeg_tree),
                             "--cutmix-alpha", "-1", "--out", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert result.returncode == 2 and "--cutmix-alpha must be >= 0" in result.stderr and "Traceback" not in result.stderr


def test_click_usage_errors_are_one_line_naming_the_flag(capsys):
    """An unknown flag, a value of the wrong type or out of range: one ``error:`` line, exit 2, no usage block."""
    for args, fragment in ((["preview", "--bogus"], "No such option '--bogus'"),
                           (["preview", "--count", "0"], "Invalid value for '--count'"),
                           (["train", "--epochs", "abc"], "Invalid value for '--epochs'"),
                           (["nosuchcommand"], "No such command 'nosuchcommand'")):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (args, err)
        assert "--help lists the options" in lines[0]


def test_preview_mixes_every_tile_with_another_image(jpeg_tree, device):
    """Issue 10.3: the default seed used to pair 3 of 8 tiles with themselves (they looked unmixed)."""
    from dali_cutmix.pipelines.preview import preview_batch

    for seed, mode in ((0, "batch"), (0, "elem"), (1, "elem"), (2, "batch")):
        batch = preview_batch(jpeg_tree, count=8, crop=32, seed=seed, mix_options=dict(mode=mode), device=device)
        perm, method = batch["perm"], batch["method"]
        assert len(perm) == 8 and sorted(perm.tolist()) == list(range(8))
        assert (perm != np.arange(8)).all() and (method == 1).all(), (seed, mode, perm)
        assert batch["images"].shape == (8, 32, 32, 3)


def test_preview_of_one_image_is_refused_naming_count(jpeg_tree, tmp_path, capsys):
    from dali_cutmix.pipelines.preview import write_preview

    message = "count must be an integer >= 2 (a preview mixes each image with another one), got 1"
    with pytest.raises(UserError) as err:
        write_preview(jpeg_tree, tmp_path / "x.png", count=1)
    assert str(err.value) == message
    assert main(["preview", "--data", str(jpeg_tree), "--out", str(tmp_path / "x.png"), "--count", "1"]) == 2
    assert capsys.readouterr().err == f"error: --{message}\n"
    assert not (tmp_path / "x.png").exists()


def test_preview_of_fewer_images_than_count_shows_them_all(tmp_path, device):
    """Issue 10.3: fewer images than --count used to crash with IndexError (partners among the padding)."""
    from dali_cutmix.pipelines.preview import preview_batch, write_preview

    data = write_jpeg_tree(tmp_path / "three", classes=3, per_class=1)
    batch = preview_batch(data, count=8, crop=48, device=device)
    assert len(batch["images"]) == 3 and sorted(batch["class_id"].tolist()) == [0, 1, 2]
    assert sorted(batch["perm"].tolist()) == [0, 1, 2] and (batch["perm"] != np.arange(3)).all()
    assert set(np.flatnonzero(batch["targets"].sum(0)).tolist()) <= {0, 1, 2}
    out = write_preview(data, tmp_path / "grid.png", count=8, crop=48, device=device)
    caption = 14 * 2 + 6
    assert np.asarray(Image.open(out)).shape == (caption + (96 + caption + 8) + 8, 4 * (96 + 8) + 8, 3), \
        "one row of three tiles under a line that says so"
    lone = write_jpeg_tree(tmp_path / "one", classes=1, per_class=1)
    batch = preview_batch(lone, count=4, crop=48, device=device)
    assert batch["perm"].tolist() == [0] and batch["method"].tolist() == [0], "one image: nothing to mix with"


@pytest.mark.parametrize("args, text", [
    ((0, 1, 0, [1.0, 0.0]), "cat (not mixed)"),
    ((0, None, 1, [1.0, 0.0]), "cat (mixed with itself)"),
    ((0, 0, 1, [1.0, 0.0]), "cat 1.00 (same class)"),
    ((0, 1, 1, [0.75, 0.25]), "cat 0.75\ndog 0.25"),
    ((1, 0, 2, [0.4, 0.6]), "dog 0.60\ncat 0.40"),
])
def test_captions_say_when_a_tile_is_not_mixed(args, text):
    from dali_cutmix.pipelines.preview import caption

    own, partner, method, targets = args
    assert caption(own, partner, method, np.array(targets), ["cat", "dog"]) == text


def test_unmixed_tiles_are_labelled_in_the_grid(jpeg_tree, tmp_path, monkeypatch, device):
    """prob=0: every tile unmixed, each caption says so."""
    from PIL import ImageDraw

    from dali_cutmix.pipelines import preview

    texts = []
    original = ImageDraw.ImageDraw.multiline_text
    monkeypatch.setattr(ImageDraw.ImageDraw, "multiline_text",
                        lambda self, xy, text, *a, **k: texts.append(text) or original(self, xy, text, *a, **k))
    preview.write_preview(jpeg_tree, tmp_path / "grid.png", count=4, crop=32, mix_options=dict(prob=0.0),
                          device=device)
    assert len(texts) == 4 and all(t.endswith(" (not mixed)") for t in texts), texts

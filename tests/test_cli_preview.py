"""`dali-cutmix preview` and the CLI's error contract (one line on stderr, exit code 2)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from dali_cutmix.cli import main


def test_preview_writes_a_png_grid(jpeg_tree, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["preview", "--data", str(jpeg_tree), "--out", str(out), "--count", "6", "--crop", "48"]) == 0
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

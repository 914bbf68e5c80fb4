"""The CLI's error contract for ``preview`` and ``profile`` (issue 10): every error a user can cause is one line on
stderr naming the flag as typed, exit code 2, no traceback, checked before any work, nothing left behind; a cold
first use says what it is doing."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dali_cutmix.cli import main
from dali_cutmix.errors import UserError

#: Python names that must never reach a user of the command line (the flags are --cutmix-alpha, ...).
PYTHON_NAMES = re.compile(r"(?<![-\w])(cutmix_alpha|mixup_alpha|switch_prob|cutmix_minmax|minmax|label_smoothing|"
                          r"correct_lam|batch_size|json_path)(?![-\w])")
QUICK_PROFILE = ["--batch-size", "2", "--threads", "1", "--batches", "1", "--repeats", "1", "--crop", "16"]


def run_cli(argv):
    """The CLI in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def run_process(argv, cache, **env):
    """The CLI in a fresh process (DALI's own prints on fd 2 included), its cache folder ``cache``."""
    environment = {**os.environ, "DALI_CUTMIX_CACHE": str(cache), **env}
    return subprocess.run([sys.executable, "-m", "dali_cutmix.cli", *argv], capture_output=True, text=True,
                          env=environment, timeout=300)


def assert_one_error_line(code, stderr, *fragments):
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr and not PYTHON_NAMES.search(stderr), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    """12 small demo JPEGs in 3 classes (class-per-folder)."""
    from dali_cutmix.pipelines.demo import write_dataset

    root = write_dataset(tmp_path_factory.mktemp("errors") / "demo", train_per_class=4, val_per_class=1, size=32,
                         num_classes=3)
    return root / "train"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder for this test, for the CLI in this process and in subprocesses."""
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv("DALI_CUTMIX_CACHE", str(folder))
    return folder


def _unwritable_folder(tmp_path) -> Path:
    """A folder no new file can be made in (a read-only one; /sys where root ignores the mode), or skip."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        try:
            with open(candidate / ".probe", "x"):
                pass
        except OSError:
            return candidate
        os.unlink(candidate / ".probe")
    pytest.skip("no unwritable folder on this machine")


# -- item 6: every output path is checked before any work ---------------------------------------------------------

OUTPUTS = [("preview", "--out"), ("profile", "--json"), ("profile", "--plot")]


@pytest.mark.parametrize("command, flag", OUTPUTS)
def test_an_output_in_a_missing_folder_is_refused_before_any_work(command, flag, tmp_path, cache):
    target = tmp_path / "nonexistent_dir" / "x.png"
    start = time.perf_counter()
    code, stdout, stderr = run_cli([command, flag, str(target), *(["--images", "4"] if command == "profile" else [])])
    line = assert_one_error_line(code, stderr, f"error: {flag}:", str(target.parent), "does not exist")
    assert stdout == "" and time.perf_counter() - start < 30, line
    assert not target.parent.exists(), "the folder is not created"
    assert list(cache.iterdir()) == [], "no data generated, nothing built: the check comes first"


@pytest.mark.parametrize("command, flag", OUTPUTS)
def test_an_output_under_a_file_is_one_line(command, flag, tmp_path, cache):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    code, _, stderr = run_cli([command, flag, str(afile / "x.png")])
    assert_one_error_line(code, stderr, f"error: {flag}:", str(afile), "is a file, not a directory")
    assert afile.read_text() == "x" and list(cache.iterdir()) == []


@pytest.mark.parametrize("command, flag", OUTPUTS)
def test_an_output_in_an_unwritable_folder_is_one_line_before_any_work(command, flag, tmp_path, cache):
    folder = _unwritable_folder(tmp_path)
    code, _, stderr = run_cli([command, flag, str(folder / "x.png")])
    line = assert_one_error_line(code, stderr, f"error: {flag}:", str(folder), "cannot write")
    assert ".tmp" not in line and list(cache.iterdir()) == []


@pytest.mark.parametrize("command, flag", OUTPUTS)
def test_an_output_that_is_a_folder_is_one_line(command, flag, tmp_path, cache):
    code, _, stderr = run_cli([command, flag, str(tmp_path)])
    assert_one_error_line(code, stderr, flag, "is a directory")


@pytest.mark.parametrize("command, flag", OUTPUTS)
def test_an_output_that_is_a_pipe_is_one_line(command, flag, tmp_path, cache):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, _, stderr = run_cli([command, flag, str(fifo)])
    assert_one_error_line(code, stderr, f"error: {flag}:", "not a regular file")
    assert not fifo.is_file() and fifo.exists()


def test_atomic_path_names_the_users_path_never_its_temporary_file(tmp_path, monkeypatch):
    import tempfile

    from dali_cutmix.helpers.atomic import atomic_path

    target = tmp_path / "x.png"

    def refuse(prefix, suffix, dir):
        raise PermissionError(13, "Permission denied", os.path.join(dir, f"{prefix}1si3gwof{suffix}"))

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", refuse)
        with pytest.raises(PermissionError) as error, atomic_path(target):
            pass
    assert error.value.filename == str(target) and ".tmp" not in str(error.value)

    with pytest.raises(OSError) as error, atomic_path(target) as tmp:  # the writer fails on the temporary file
        raise OSError(28, "No space left on device", str(tmp))
    assert error.value.errno == 28 and error.value.filename == str(target) and ".tmp" not in str(error.value)

    with pytest.raises(FileNotFoundError) as error, atomic_path(target):  # another file's error stays its own
        open(tmp_path / "input.jpg")
    assert error.value.filename == str(tmp_path / "input.jpg")
    assert list(tmp_path.iterdir()) == [], "no temporary file left behind, no target written"


def test_check_writable_creates_nothing(tmp_path):
    from dali_cutmix.helpers.atomic import check_writable

    assert check_writable(tmp_path / "x.png") == tmp_path / "x.png"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="does not exist"):
        check_writable(tmp_path / "a" / "b" / "x.png")
    assert list(tmp_path.iterdir()) == []


# -- item 7: no tracebacks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["preview", "profile"])
@pytest.mark.parametrize("seed", ["99999999999999999999", "-1", "4294967296"])
def test_a_seed_out_of_range_is_one_line_naming_the_flag(command, seed, tmp_path, cache):
    code, _, stderr = run_cli([command, "--seed", seed, *(["--json", str(tmp_path / "p.json")]
                                                          if command == "profile" else [])])
    assert_one_error_line(code, stderr, "--seed", "4294967295", seed)
    assert list(tmp_path.glob("*.json")) == [] and list(cache.iterdir()) == []


@pytest.mark.parametrize("command", ["preview", "profile"])
def test_a_seed_that_is_not_an_integer_is_one_line(command, cache):
    code, _, stderr = run_cli([command, "--seed", "1.5"])
    assert_one_error_line(code, stderr, "--seed", "'1.5'")


def test_the_largest_seed_is_taken(small_tree, tmp_path, device):
    out = tmp_path / "grid.png"
    code, _, stderr = run_cli(["preview", "--data", str(small_tree), "--out", str(out), "--crop", "32",
                               "--seed", "4294967295", "--device", device])
    assert code == 0 and out.exists(), stderr


@pytest.mark.parametrize("command", ["preview", "profile"])
def test_gpu_without_cuda_is_one_line_and_no_dali_noise(command, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = ["--out", str(tmp_path / "x.png")] if command == "preview" else ["--json", str(tmp_path / "p.json"),
                                                                           "--plot", str(tmp_path / "p.png")]
    result = run_process([command, "--device", "gpu", *out], tmp_path / "cache")
    assert_one_error_line(result.returncode, result.stderr, "error: --device gpu:", "CUDA", "--device cpu")
    assert "dlopen" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing written, no cache made"


@pytest.mark.parametrize("compiler, words", [
    ("nonexistent-g++", ["'nonexistent-g++' was not found", "CXX"]),
    ("/bin/false", ["'/bin/false' exited with code 1", "printed nothing", "CXX"]),
])
def test_a_missing_or_failing_compiler_is_one_line(compiler, words, small_tree, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "out" / "x.png"
    out.parent.mkdir()
    result = run_process(["preview", "--data", str(small_tree), "--out", str(out), "--crop", "32"], cache,
                         CXX=compiler)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr and not lines[-1].endswith(":"), result.stderr
    assert all(line.startswith("compiling dali-cutmix's DALI operators") for line in lines[:-1]), result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    assert list(out.parent.iterdir()) == [], "no preview, no temporary file"
    built = list(cache.glob("native/*/*.so")) + list(cache.glob("native/*/.build-*"))
    assert built == [], "no library, no half-built one"


def test_a_failing_compilers_error_is_one_line_with_its_first_error(tmp_path, monkeypatch):
    from dali_cutmix import native

    noisy = "printf 'mix_ops.cc:1:1: error: something broke\\nmore\\nand more\\n' >&2; exit 3"
    monkeypatch.setenv("CXX", f"/bin/sh -c \"{noisy}\"")
    with pytest.raises(native.NativeBuildError) as error:
        native.build(cache=tmp_path)
    message = str(error.value)
    assert "\n" not in message and "exited with code 3" in message and "error: something broke" in message
    log = Path(error.value.log)
    assert log.is_file() and "and more" in log.read_text() and str(log) in message
    assert "and more" in error.value.output and error.value.missing is None


def test_an_unwritable_cache_folder_is_one_line(small_tree, tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("DALI_CUTMIX_CACHE", str(afile / "cache"))
    for argv in (["preview", "--out", str(tmp_path / "x.png")],
                 ["profile", "--images", "4", "--json", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png")]):
        code, _, stderr = run_cli(argv)
        assert code == 2 and "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines()[-1].startswith("error: cannot write the ") and "DALI_CUTMIX_CACHE" in stderr
    # the native operators' cache (a fresh process: this one has them loaded)
    result = run_process(["preview", "--data", str(small_tree), "--out", str(tmp_path / "x.png")], afile / "cache")
    assert_one_error_line(result.returncode, result.stderr, "cache folder", "DALI_CUTMIX_CACHE")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_every_error_class_a_user_can_cause_is_a_user_error():
    from dali_cutmix.imagecheck import BadFileError
    from dali_cutmix.native import NativeBuildError
    from dali_cutmix.options import MixOptionError
    from dali_cutmix.train.checkpoint import CheckpointError
    from dali_cutmix.train.loop import DataFileFailed, TrainingDiverged
    from dali_cutmix.train.plan import LaunchError

    for cls in (BadFileError, NativeBuildError, MixOptionError, CheckpointError, DataFileFailed, TrainingDiverged,
                LaunchError):
        assert issubclass(cls, UserError) and not issubclass(cls, (ValueError, OSError, RuntimeError)), cls


# -- item 9: the flags, never the Python names ---------------------------------------------------------------------

@pytest.mark.parametrize("args, flag", [
    (["--switch-prob", "2"], "--switch-prob"),
    (["--cutmix-minmax", "0.9,0.1"], "--cutmix-minmax"),
    (["--cutmix-alpha", "-1"], "--cutmix-alpha"),
    (["--cutmix-alpha", "0", "--mixup-alpha", "0"], "--mixup-alpha"),
    (["--label-smoothing", "1"], "--label-smoothing"),
    (["--mode", "pairs"], "--mode"),
])
@pytest.mark.parametrize("command", ["preview", "profile"])
def test_mixing_errors_name_the_flags(command, args, flag, tmp_path, cache):
    code, _, stderr = run_cli([command, *args, *(["--json", str(tmp_path / "p.json")] if command == "profile"
                                                 else ["--out", str(tmp_path / "x.png")])])
    assert_one_error_line(code, stderr, flag)
    assert list(tmp_path.iterdir()) == [cache]


def test_preview_data_errors_name_the_flag(tmp_path, cache):
    listing = tmp_path / "list.txt"
    listing.write_text("not a file list line\n")
    for data, words in ((tmp_path / "missing", "does not exist"), (listing, "expected 'path label'")):
        code, _, stderr = run_cli(["preview", "--data", str(data), "--out", str(tmp_path / "x.png")])
        assert_one_error_line(code, stderr, "error: --data:", words)
    assert not (tmp_path / "x.png").exists()


def test_the_skipped_torchvision_mixer_names_the_flags():
    from dali_cutmix import MixOptions
    from dali_cutmix.profiler.mixers import torchvision_mixer
    from dali_cutmix.profiler.timing import VariantUnavailable

    with pytest.raises(VariantUnavailable) as error:
        torchvision_mixer(MixOptions(cutmix_alpha=0.0, cutmix_minmax=(0.2, 0.5)), num_classes=3)
    assert "--cutmix-alpha" in str(error.value) and not PYTHON_NAMES.search(str(error.value))


# -- item 15: a cold first use says what it does, a warm one says nothing -------------------------------------------

def test_a_cold_first_use_says_what_it_does_and_a_warm_one_is_silent(tmp_path, device):
    """On the GPU too: neither DALI nor nvImageCodec adds a line of its own."""
    cache = tmp_path / "cache"
    out = tmp_path / "grid.png"
    cold = run_process(["preview", "--out", str(out), "--crop", "32", "--device", device], cache)
    assert cold.returncode == 0, cold.stderr
    lines = cold.stderr.strip().splitlines()
    assert len(lines) == 2, cold.stderr
    assert lines[0].startswith("generating the demo dataset once") and str(cache) in lines[0]
    assert lines[1].startswith("compiling dali-cutmix's DALI operators") and str(cache) in lines[1]
    warm = run_process(["preview", "--out", str(out), "--crop", "32", "--device", device], cache)
    assert warm.returncode == 0 and warm.stderr == "", warm.stderr
    assert warm.stdout.strip() == f"wrote {out}"


def test_demo_and_native_progress_only_when_the_work_happens(tmp_path, monkeypatch, caplog):
    import logging

    from dali_cutmix import native
    from dali_cutmix.pipelines.demo import ensure_demo_dataset

    heard = []
    ensure_demo_dataset(tmp_path, progress=heard.append)
    ensure_demo_dataset(tmp_path, progress=heard.append)
    assert len(heard) == 1 and heard[0].startswith("generating the demo dataset once")

    monkeypatch.setattr(native, "build_command", lambda output: ["cp", "/bin/true", str(output)])
    with caplog.at_level(logging.INFO, logger="dali_cutmix"):
        native.build(cache=tmp_path)
        native.build(cache=tmp_path)
    said = [r.getMessage() for r in caplog.records if r.name.startswith("dali_cutmix")]
    assert len(said) == 1 and said[0].startswith("compiling dali-cutmix's DALI operators")


# -- a bug is not a user error -------------------------------------------------------------------------------------

PLANTED_BUG = """
import sys
import dali_cutmix.pipelines.scan as scan

def scan_data(*args, **kwargs):
    raise KeyError("planted bug")

scan.scan_data = scan_data
from dali_cutmix.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_bug_behind_a_command_shows_its_traceback_and_exits_1(small_tree, tmp_path):
    """An exception that is not a UserError is a bug: the traceback, a last line that says so and where it is
    saved, exit code 1."""
    env = {**os.environ, "DALI_CUTMIX_CACHE": str(tmp_path / "cache")}
    env.pop("DALI_CUTMIX_DEBUG", None)
    result = subprocess.run([sys.executable, "-c", PLANTED_BUG, "scan", str(small_tree)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback (most recent call last)" in result.stderr and "KeyError: 'planted bug'" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("bug: dali-cutmix stopped on an unexpected KeyError"), last
    saved = Path(re.search(r"saved in (\S+?\.log)", last).group(1))
    assert saved.parent == tmp_path / "cache" / "crashes" and "planted bug" in saved.read_text()


@pytest.mark.parametrize("how", ["env", "flag"])
def test_debug_shows_the_traceback_of_a_user_error(how, tmp_path):
    env = {"DALI_CUTMIX_DEBUG": "1"} if how == "env" else {}
    argv = (["--debug"] if how == "flag" else []) + ["scan", str(tmp_path / "missing")]
    result = run_process(argv, tmp_path / "cache", **env)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr and "UserError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "missing" in result.stderr


# -- issue 20: messages up front and alike -------------------------------------------------------------------------

def _files_under(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def an_image(tmp_path):
    """A real JPEG file, given where a folder or a file list is expected."""
    from PIL import Image

    path = tmp_path / "some.jpg"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return path


@pytest.mark.parametrize("argv", [
    ["preview", "--data", "{image}", "--out", "{tmp}/x.png"],
    ["profile", "--data", "{image}", "--json", "{tmp}/p.json"],
    ["scan", "{image}", "--report", "{tmp}/r.json"],
    ["shard", "{image}", "--out", "{tmp}/shards"],
    ["train", "--data", "{image}", "--output", "{tmp}/run"],
])
def test_an_image_given_as_data_says_so_in_one_line(argv, an_image, tmp_path, cache):
    before = _files_under(tmp_path)
    code, stdout, stderr = run_cli([a.format(image=an_image, tmp=tmp_path) for a in argv])
    line = assert_one_error_line(code, stderr, str(an_image))
    assert "file" in line and "codec" not in line and "utf-8" not in line, line
    if argv[0] not in ("train", "profile"):  # their own wordings: "Directory ... is a file", "got the file ..."
        assert "is an image file, expected a folder" in line, line
    assert stdout == "" and _files_under(tmp_path) == before


def test_a_missing_data_folder_says_does_not_exist(tmp_path, cache):
    for argv in (["scan", str(tmp_path / "nope")], ["shard", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]):
        code, _, stderr = run_cli(argv)
        assert assert_one_error_line(code, stderr) == f"error: data path {str(tmp_path / 'nope')!r} does not exist"
    assert _files_under(tmp_path) == ["cache"]


#: (command line, flag) for the data tools' outputs; DATA is the small class-per-folder tree.
DATA_TOOL_OUTPUTS = [(["scan", "DATA", "--report", "TARGET"], "--report"),
                     (["scan", "DATA", "--write-list", "TARGET"], "--write-list"),
                     (["shard", "DATA", "--out", "TARGET"], "--out")]


def _data_tool(argv, data, target):
    return run_cli([str(data) if a == "DATA" else str(target) if a == "TARGET" else a for a in argv])


@pytest.mark.parametrize("argv, flag", DATA_TOOL_OUTPUTS)
def test_a_data_tool_output_in_a_missing_folder_is_refused_before_the_scan(argv, flag, small_tree, tmp_path, cache):
    target = tmp_path / "nonexistent_dir" / "out"
    before = _files_under(small_tree)
    code, stdout, stderr = _data_tool(argv, small_tree, target)
    assert assert_one_error_line(code, stderr) == (
        f"error: {flag}: the directory {str(target.parent)!r} does not exist (create it first)")
    assert stdout == "", "nothing is scanned before the check"
    assert not target.parent.exists() and list(cache.iterdir()) == [] and _files_under(small_tree) == before


@pytest.mark.parametrize("argv, flag", DATA_TOOL_OUTPUTS)
def test_a_data_tool_output_in_an_unwritable_folder_is_refused_before_the_scan(argv, flag, small_tree, tmp_path,
                                                                               cache):
    folder = _unwritable_folder(tmp_path)
    code, stdout, stderr = _data_tool(argv, small_tree, folder / "out")
    line = assert_one_error_line(code, stderr, f"error: {flag}: cannot write in the directory {str(folder)!r}")
    assert stdout == "" and ".tmp" not in line and list(cache.iterdir()) == []


@pytest.mark.parametrize("argv, flag", DATA_TOOL_OUTPUTS)
def test_a_data_tool_output_under_a_file_is_one_line(argv, flag, small_tree, tmp_path, cache):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    code, stdout, stderr = _data_tool(argv, small_tree, afile / "out")
    assert_one_error_line(code, stderr, f"error: {flag}:", str(afile), "is a file")
    assert stdout == "" and afile.read_text() == "x" and list(cache.iterdir()) == []


def test_shard_out_that_is_a_file_is_one_line(small_tree, tmp_path, cache):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    code, stdout, stderr = run_cli(["shard", str(small_tree), "--out", str(afile)])
    assert assert_one_error_line(code, stderr) == f"error: --out: {str(afile)!r} is a file, expected a folder"
    assert stdout == "" and afile.read_text() == "x"


def test_write_list_with_split_checks_each_split_folder(tmp_path, cache):
    from dali_cutmix.pipelines.demo import write_dataset

    root = write_dataset(tmp_path / "imagenet", train_per_class=2, val_per_class=1, size=16, num_classes=2)
    (tmp_path / "lists-train").mkdir()
    code, stdout, stderr = run_cli(["scan", str(root), "--write-list", str(tmp_path / "lists-{split}" / "l.txt")])
    assert assert_one_error_line(code, stderr) == (
        f"error: --write-list: the directory {str(tmp_path / 'lists-val')!r} does not exist (create it first)")
    assert stdout == "" and list((tmp_path / "lists-train").iterdir()) == []


@pytest.mark.parametrize("name, imagenet", [("photos", False), ("val", True), ("ILSVRC2012_val_00000001.JPEG", True)])
def test_only_an_imagenet_like_flat_folder_gets_the_valprep_hint(name, imagenet, an_image, tmp_path, cache):
    import shutil

    folder = tmp_path / ("val" if name == "val" else "photos")
    folder.mkdir()
    for i in range(2):
        target = name if name.startswith("ILSVRC") and i == 0 else f"img{i}.jpg"
        shutil.copy(an_image, folder / target)
    code, stdout, stderr = run_cli(["scan", str(folder)])
    line = assert_one_error_line(code, stderr, f"error: data path {str(folder)!r} is a flat folder: it holds 2 images "
                                               f"directly and none in class folders")
    assert ("valprep.sh" in line) is imagenet and ("ImageNet" in line) is imagenet, line
    assert line.endswith(f"so that it reads {folder}/<class>/<image>"), line

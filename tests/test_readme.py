"""The README runs as written: every fenced code block is found by parsing README.md and executed here, on the
CPU at a realistic size (batch 32, 224 crops, 3 batches), unless an HTML comment right above it says
``<!-- readme-test: not run (REASON) -->``; the blocks that carry that mark are listed here with their reason, so a
new one cannot slip in unnoticed. Also: the README's contents list, links, and that the project's docs speak to
users (no notes on how the project was made)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOT_RUN = re.compile(r"<!-- readme-test: not run \((?P<reason>[^)]+)\) -->")

#: The blocks not run here, by their first line: each needs what a test cannot have (a package index, ImageNet,
#: GPUs) or is not code.
EXPECTED_NOT_RUN = {
    "python3 -m venv .venv && .venv/bin/pip install -q -c .ci/constraints.txt -e . && .venv/bin/dali-cutmix train",
    "pip install torch torchvision --index-url https://download.pytorch.org/whl/cu128   # or cu126",
    "pip install nvidia-dali-cuda130 torch torchvision numpy click pillow",
    "dali-cutmix train --data /imagenet --gpus 8               # ResNet-50 on ImageNet, CutMix paper recipe",
    "dali-cutmix train --data /imagenet --gpus 8 --output runs/r50          # the paper's recipe",
    "@inproceedings{yun2019cutmix,",
}


def code_blocks(text: str):
    """``(language, code, not_run_reason or None)`` for every fenced block of a Markdown ``text``, in order."""
    blocks = []
    for found in re.finditer(r"^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```$", text, flags=re.S | re.M):
        before = text[:found.start()].rstrip().rsplit("\n", 1)[-1]
        mark = NOT_RUN.fullmatch(before.strip())
        blocks.append((found.group("lang"), found.group("code"), mark.group("reason") if mark else None))
    return blocks


def test_every_block_has_a_language_and_the_skipped_ones_are_the_known_ones():
    blocks = code_blocks(README.read_text())
    assert blocks and all(lang for lang, _, _ in blocks), "a README code block has no language"
    skipped = {code.splitlines()[0] for _, code, reason in blocks if reason}
    assert skipped == EXPECTED_NOT_RUN
    run = [(lang, code) for lang, code, reason in blocks if not reason]
    assert {lang for lang, _ in run} == {"python", "bash"}
    assert [lang for lang, _ in run].count("python") == 4 and [lang for lang, _ in run].count("bash") == 1


def runnable(language: str):
    return [code for lang, code, reason in code_blocks(README.read_text()) if lang == language and not reason]


@pytest.fixture(scope="module")
def data224(tmp_path_factory):
    """An ImageNet-like root: 3 classes x 32 noise JPEGs of 256x320 in train/ (96 images: 3 batches of 32), 4
    per class in val/, and a hidden folder in train/ that must not become a class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("readme") / "data"
    rng = np.random.default_rng(0)
    for split, count in (("train", 32), ("val", 4)):
        for c in range(3):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=85)
    hidden = root / "train" / ".ipynb_checkpoints"
    hidden.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(hidden / "x.jpg")
    return root


@pytest.fixture(scope="module")
def block_cache(tmp_path_factory):
    """The blocks' cache folder ($DALI_CUTMIX_CACHE): a new one (scan results, demo data stay out of the user's),
    holding the native operators built once, as a first use would have built them."""
    from dali_cutmix import native

    library = native.build()
    folder = tmp_path_factory.mktemp("readme-cache")
    target = native.library_path(folder)
    target.parent.mkdir(parents=True)
    target.symlink_to(library)
    return folder


def run_block(code: str, language: str, cwd: Path, data: Path, cache: Path,
              device: str = "cpu") -> subprocess.CompletedProcess:
    """Run one README block as a user would: a fresh process in an empty folder, ``$DATA`` set; ``dali-cutmix``
    is the command line of the Python running the tests (its environment, its PYTHONPATH). The snippets pick
    their device themselves (``torch.cuda.is_available()``): on ``device="cpu"`` the block sees no GPU
    (``CUDA_VISIBLE_DEVICES`` empty), so it takes its CPU path on any machine; on "gpu" it sees this machine's."""
    env = dict(os.environ, DATA=str(data), DALI_CUTMIX_CACHE=str(cache))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if language == "python":
        command = [sys.executable, "-c", code]
    else:
        shim = f'dali-cutmix() {{ "{sys.executable}" -m dali_cutmix.cli "$@"; }}\n'
        command = ["bash", "-e", "-o", "pipefail", "-c", shim + code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_loader_snippet_trains_three_batches_of_32_at_224(data224, block_cache, tmp_path, device):
    """On the CPU: ResNet-18, 3 batches of 32; on the GPU: ResNet-50 under bf16 autocast, one batch of the 96."""
    code = next(c for c in runnable("python") if "CutMixLoader" in c)
    done = run_block(code, "python", tmp_path, data224 / "train", block_cache, device)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.fullmatch(r"epoch 1: loss (\d+\.\d{3})\n", done.stdout)
    assert found, done.stdout
    assert 0 < float(found.group(1)) < 10  # soft targets over 3 classes: a finite, positive cross-entropy


def test_the_loader_snippet_reads_torchruns_environment():
    code = next(c for c in runnable("python") if "CutMixLoader" in c)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        assert f'os.environ.get("{name}"' in code
    assert "enabled=gpu" in code and "torch.bfloat16" in code  # no autocast on the CPU, bf16 on the GPU


def test_the_dali_iterator_snippet_runs(data224, block_cache, tmp_path, device):
    code = next(c for c in runnable("python") if "DALIGenericIterator" in c)
    # the snippet's own assert checks the label width; one more line checks what it iterated
    check = textwrap.dedent("""
        print(images.shape[0], tuple(images.shape[1:]), tuple(targets.shape), images.dtype, targets.dtype)
        print(round(float(targets.sum(1).min()), 4), round(float(targets.sum(1).max()), 4))
    """)
    done = run_block(code + check, "python", tmp_path, data224 / "train", block_cache, device)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["32 (3, 224, 224) (32, 3) torch.float32 torch.float32", "1.0 1.0"]


def test_the_own_pipeline_snippet_keeps_the_hidden_folder_out(data224, block_cache, tmp_path, device):
    code = next(c for c in runnable("python") if "pipeline_def" in c)
    assert "file_root=data, files=files, labels=labels" in code
    check = textwrap.dedent("""
        import numpy as np
        print(sorted({f.split("/")[0] for f in files}), len(files))
        print(np.asarray(soft_labels.as_cpu().as_tensor()).sum(1).round(4).tolist() == [1.0] * 32)
    """)
    done = run_block(code + check, "python", tmp_path, data224 / "train", block_cache, device)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["[32, 3, 224, 224] [32, 3]", "['class0', 'class1', 'class2'] 96", "True"]


def test_the_dynamic_mode_snippet_mixes_and_resumes(data224, block_cache, tmp_path, device):
    pytest.importorskip("torchdata", reason="the dynamic extra (pip install 'dali-cutmix[dynamic]') is not installed")
    code = next(c for c in runnable("python") if "dali_cutmix.dynamic_nodes" in c)
    done = run_block(code, "python", tmp_path, data224 / "train", block_cache, device)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    methods = r"\[[012](?:, [012]){7}\]"  # per sample: 0 none, 1 CutMix, 2 MixUp
    assert re.fullmatch(rf"torch\.Size\(\[8, 224, 224, 3\]\) torch\.Size\(\[8, 4\]\) {methods}", lines[0]), lines
    assert lines[1:] == ["32 images left in the epoch"]  # 96 images: 2 batches of 32 taken, 1 left


def test_the_command_line_block_runs_and_writes_what_it_says(data224, block_cache, tmp_path):
    (code,) = runnable("bash")
    done = run_block(code, "bash", tmp_path, data224, block_cache)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "scan.json").is_file() and (tmp_path / "grid.png").is_file()
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["train", "val"]
    assert (tmp_path / "shards" / "train" / "manifest.json").is_file()


# -- the front page ------------------------------------------------------------------------------------------------

def test_the_contents_list_links_every_section():
    text = README.read_text()
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    anchors = set(re.findall(r"\]\(#([\w-]+)\)", contents))
    assert {slug(s) for s in sections if s != "Contents"} <= anchors
    headings = {slug(h) for h in re.findall(r"^#{2,4} (.+)$", text, flags=re.M)}
    assert anchors <= headings, anchors - headings


def slug(title: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set:
    text = re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_every_relative_link_of_the_docs_resolves():
    """Links between the README, docs/ and benchmarks/README.md point at files that exist, and their #anchors at
    headings of those files."""
    for page in [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in re.findall(r"\]\(([^)#:\s]*)(?:#([^)]*))?\)", page.read_text()):
            path = (page.parent / target).resolve() if target else page
            where = f"{page.relative_to(ROOT)} links {target}#{anchor}"
            assert path.exists(), f"{where}: the file is missing"
            if anchor and path.exists() and path.suffix == ".md":
                assert anchor in anchors(path), f"{where}: no such heading"


def test_the_license_and_citation_exist():
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text and len(license_text.splitlines()) > 190
    cff = (ROOT / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in cff and "license: Apache-2.0" in cff
    assert "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features" in cff
    bibtex = next(code for lang, code, _ in code_blocks(README.read_text()) if lang == "bibtex")
    assert "Yun, Sangdoo" in bibtex and "year      = {2019}" in bibtex and "(ICCV)" in bibtex


# -- docs for users ------------------------------------------------------------------------------------------------

#: Words about how the project was made, not what a user needs (regular expressions, any case).
DEVELOPMENT_NOTES = (r"\bsessions?\b", r"\bsandbox", r"\$OUT\b", r"shared/device", r"pack-dali",
                     r"development machine", r"before the first release", r"no aliases kept", r"who had a GPU")


def project_docs():
    return [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("words", DEVELOPMENT_NOTES)
def test_no_doc_speaks_of_how_the_project_was_made(words):
    found = [f"{page.relative_to(ROOT)}:{n}" for page in project_docs()
             for n, line in enumerate(page.read_text().splitlines(), 1) if re.search(words, line, flags=re.I)]
    assert not found, f"{words!r} in {found}"


def test_the_gpu_section_leads_with_the_script_and_says_no_figures_are_published():
    readme = README.read_text()
    assert "No GPU figures are published yet." in readme and "bash benchmarks/gpu_run.sh OUT" in readme
    gpu = (ROOT / "docs" / "gpu.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", gpu, flags=re.S).group(1)
    assert first_block.splitlines()[0].startswith("bash benchmarks/gpu_run.sh OUT")
    assert "No GPU figures are published yet." in gpu and "without a package index" in gpu


def test_the_quick_start_says_how_long_each_command_takes():
    quick = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "install and demo together\ntake about 5 minutes" in quick and "about 15 minutes on 2 cores" in quick

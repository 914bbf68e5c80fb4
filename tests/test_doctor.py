"""`dali-cutmix doctor`: the facts it reads, its verdict on made-up GPU machines, the real command on this machine
(CPU verdict, exit 1), building the native operators into a chosen cache, bad usage, and the README's Install
section."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dali_cutmix.cli import main
from dali_cutmix.pipelines import doctor
from dali_cutmix.pipelines.doctor import Facts, Gpu, diagnose

ROOT = Path(__file__).resolve().parents[1]
CU130_ARCH = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
CU126_ARCH = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")
H100 = "NVIDIA H100 80GB HBM3"

#: A machine with 8 H100s, driver 580, PyPI's torch (CUDA 13.0) and DALI's default CUDA 12 wheel: the GPU path runs.
GPU_MACHINE = Facts(
    python="3.11.7", executable="/venv/bin/python",
    torch="2.14.1+cu130", torch_cuda="13.0", torch_gpus=8, torch_arch=CU130_ARCH, gpus=(Gpu(H100, (9, 0)),) * 8,
    nccl_compiled=True, nccl="2.30.7",
    dali_distributions=(("nvidia-dali-cuda120", "2.4.0"),), dali="2.4.0", dali_gpus=8,
    driver="580.65.06", driver_source="nvidia-smi",
    native_cache="/cache", native_path="/cache/native/x86_64-glibc2.35-dali2.4.0-x/libdali_cutmix_ops.so",
    roi_decode="ok", roi_decode_detail="decoders.image_random_crop on mixed: 3 batches of 16 decoded and resized to "
    "(16, 224, 224, 3) in 2.1 s")


def machine(**changes) -> Facts:
    return dataclasses.replace(GPU_MACHINE, **changes)


def checks(facts: Facts) -> dict:
    return {c.name: c for c in diagnose(facts).checks}


# ---- what is read ------------------------------------------------------------------------------------------------

def test_the_driver_version_is_read_from_nvidia_smi_and_from_proc():
    out = f"580.65.06, {H100}\n580.65.06, {H100}\n"
    assert doctor.parse_smi_output(out) == ("580.65.06", (H100, H100))
    assert doctor.parse_smi_output("550.54.15\n") == ("550.54.15", ())
    assert doctor.parse_smi_output("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.") \
        == (None, ())
    proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC ..."
    open_module = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs-builder@U16)"
    assert doctor.parse_proc_driver_version(proprietary) == "550.54.15"
    assert doctor.parse_proc_driver_version(open_module) == "580.65.06"
    assert doctor.parse_proc_driver_version("") is None


def test_the_dali_wheel_names_its_cuda_build():
    assert doctor.dali_distribution_cuda("nvidia-dali-cuda120") == 12
    assert doctor.dali_distribution_cuda("nvidia_dali_cuda130") == 13
    assert doctor.dali_distribution_cuda("nvidia-dali-nightly-cuda130") == 13
    assert doctor.dali_distribution_cuda("nvidia-dali-tf-plugin-cuda120") is None
    assert doctor.dali_distribution_cuda("nvidia-nvjpeg-cu12") is None
    installed = [("torch", "2.14.1"), ("nvidia-dali-cuda120", "2.4.0"), ("nvidia-nvimgcodec-cu12", "0.9.0")]
    assert doctor.dali_distributions(installed) == (("nvidia-dali-cuda120", "2.4.0"),)


def test_driver_minimums_per_cuda_build():
    assert doctor.driver_runs("525.60.13", 12) and not doctor.driver_runs("525.60.11", 12)
    assert doctor.driver_runs("580.65.06", 13) and doctor.driver_runs("580", 13)
    assert doctor.driver_runs("580.65.06", 12), "a newer driver runs older builds"
    assert not doctor.driver_runs("575.57.08", 13)
    assert doctor.best_cuda("590.48.01") == 13 and doctor.best_cuda("550.54.15") == 12
    assert doctor.best_cuda("470.256.02") is None and doctor.best_cuda(None) is None


def test_torch_kernels_for_a_gpu():
    assert doctor.torch_runs_on((9, 0), CU130_ARCH)
    assert doctor.torch_runs_on((8, 9), CU130_ARCH), "sm_86 machine code runs on sm_89"
    assert doctor.torch_runs_on((10, 3), CU130_ARCH)
    assert not doctor.torch_runs_on((7, 0), CU130_ARCH)
    assert doctor.torch_runs_on((7, 0), CU126_ARCH)
    assert doctor.torch_runs_on((12, 1), ("sm_90", "compute_90")), "PTX runs on newer GPUs"


def test_the_hardware_jpeg_decoder_by_capability_or_name():
    assert doctor.hardware_jpeg_decoder(Gpu("NVIDIA A100-SXM4-80GB", (8, 0)))
    assert doctor.hardware_jpeg_decoder(Gpu(H100, (9, 0)))
    assert doctor.hardware_jpeg_decoder(Gpu("NVIDIA A10", (8, 6))) is False
    assert doctor.hardware_jpeg_decoder(Gpu("Tesla V100-SXM2-32GB", (7, 0))) is False
    assert doctor.hardware_jpeg_decoder(Gpu("NVIDIA H200")) is True
    assert doctor.hardware_jpeg_decoder(Gpu("Tesla V100-SXM2-32GB")) is None


# ---- the verdict on made-up GPU machines ------------------------------------------------------------------------

def test_a_580_driver_runs_cuda13_torch_with_cuda12_dali():
    result = diagnose(GPU_MACHINE)
    assert result.exit_code == 0 and result.gpu_path and result.cpu_path
    assert all(c.status == "ok" for c in result.checks), [c for c in result.checks if c.status != "ok"]
    driver = checks(GPU_MACHINE)["driver"].detail
    assert "580.65.06" in driver and "torch's CUDA 13.0 build" in driver and "DALI's CUDA 12 build" in driver
    assert "--gpus 8" in result.verdict
    both13 = machine(dali_distributions=(("nvidia-dali-cuda130", "2.4.0"),))
    assert diagnose(both13).exit_code == 0 and "DALI's CUDA 13 build" in checks(both13)["driver"].detail


def test_a_550_driver_with_cuda13_torch_fails_with_the_fix():
    said = "CUDA initialization: The NVIDIA driver on your system is too old (found version 12040)"
    old = machine(driver="550.54.15", torch_gpus=0, gpus=(Gpu(H100),) * 8, torch_warning=said)
    result = diagnose(old)
    assert result.exit_code == 1 and not result.gpu_path and result.cpu_path
    driver = checks(old)["driver"]
    assert driver.status == "fail" and "torch's CUDA 13.0 build needs >= 580" in driver.detail
    assert "DALI" not in driver.detail, "DALI's CUDA 12 build runs on 550"
    assert "--index-url https://download.pytorch.org/whl/cu128" in driver.fix
    assert "pip uninstall -y torch torchvision" in driver.fix
    assert "update the NVIDIA driver to >= 580" in driver.fix
    gpus = checks(old)["gpus"]
    assert gpus.status == "fail" and "torch sees 0, DALI sees 8" in gpus.detail and "too old" in gpus.detail
    assert checks(old)["jpeg decoder"].status == "ok", "judged from nvidia-smi's names"
    assert "only the CPU path" in result.verdict and "driver" in result.verdict


def test_a_550_driver_with_cuda13_dali_says_which_dali_to_install():
    old = machine(driver="550.54.15", torch_cuda="12.8", torch="2.14.1+cu128", dali_gpus=0,
                  dali_distributions=(("nvidia-dali-cuda130", "2.4.0"),))
    driver = checks(old)["driver"]
    assert driver.status == "fail" and "DALI's CUDA 13 build needs >= 580" in driver.detail
    assert "pip uninstall -y nvidia-dali-cuda130 && pip install nvidia-dali-cuda120" in driver.fix
    assert "torch" not in driver.detail
    assert checks(old)["gpus"].status == "fail" and "DALI cannot use" in checks(old)["gpus"].fix


def test_a_driver_older_than_cuda12_asks_for_a_new_driver():
    driver = checks(machine(driver="470.256.02", torch_gpus=0, dali_gpus=0))["driver"]
    assert driver.status == "fail" and driver.fix.startswith("update the NVIDIA driver to >= 580")
    assert "525.60.13" in driver.fix


def test_no_compiler_fails_the_native_operators_with_the_fix():
    message = ("dali-cutmix needs a C++ compiler to build its DALI operators once; 'g++' was not found "
               "(install g++ or set CXX)")
    facts = machine(native_path=None, native_error=message, native_missing="compiler")
    native = checks(facts)["native ops"]
    assert native.status == "fail" and native.blocks == "all" and "'g++' was not found" in native.detail
    assert "g++" in native.fix and "CXX" in native.fix
    assert "dali-cutmix doctor --build --cache DIR" in native.fix and "DALI_CUTMIX_CACHE=DIR" in native.fix
    result = diagnose(facts)
    assert result.exit_code == 1 and not result.cpu_path and result.verdict.startswith("neither path can run")
    headers = checks(machine(native_path=None, native_error="... cuda_runtime_api.h ...", native_missing="headers"))
    assert "CUDA_HOME" in headers["native ops"].fix and "nvidia-cuda-runtime-cu12" in headers["native ops"].fix


def test_gpu_counts_that_disagree_between_torch_and_dali():
    fewer = machine(dali_gpus=4)
    assert checks(fewer)["gpus"].status == "warn" and "torch sees 8, DALI sees 4" in checks(fewer)["gpus"].detail
    assert diagnose(fewer).exit_code == 0 and "--gpus 4" in diagnose(fewer).verdict
    none = machine(dali_gpus=0)
    assert checks(none)["gpus"].status == "fail" and diagnose(none).exit_code == 1
    assert checks(machine(torch_gpus=0))["gpus"].fix.startswith("torch cannot use")


def test_both_dali_wheels_installed_fail_with_the_uninstall_command():
    both = machine(dali_distributions=(("nvidia-dali-cuda120", "2.4.0"), ("nvidia-dali-cuda130", "2.4.0")))
    dali = checks(both)["dali"]
    assert dali.status == "fail" and dali.blocks == "all"
    assert dali.fix.endswith("pip uninstall -y nvidia-dali-cuda120 nvidia-dali-cuda130 && pip install "
                             "nvidia-dali-cuda130")


def test_a_cpu_only_torch_and_a_gpu_torch_has_no_kernels_for():
    cpu_torch = checks(machine(torch="2.14.1+cpu", torch_cuda=None, torch_gpus=0))["torch"]
    assert cpu_torch.status == "fail" and cpu_torch.fix.endswith(doctor.TORCH_CUDA13)
    v100 = machine(gpus=(Gpu("Tesla V100-SXM2-32GB", (7, 0)),) * 8)
    gpus = checks(v100)["gpus"]
    assert gpus.status == "fail" and "sm_70" in gpus.detail and "whl/cu126" in gpus.fix
    assert checks(v100)["jpeg decoder"].status == "warn"


def test_nccl_missing_warns_and_blocks_nothing():
    facts = machine(nccl_compiled=False, nccl=None)
    assert checks(facts)["nccl"].status == "warn" and diagnose(facts).exit_code == 0


def test_the_roi_decode_line_says_ok_warns_with_the_way_around_or_skips_with_its_reason():
    ok = checks(GPU_MACHINE)["roi decode"]
    assert (ok.status, ok.detail) == ("ok", GPU_MACHINE.roi_decode_detail)
    crashed = machine(roi_decode="failed", roi_decode_detail="the decoding process was killed by SIGSEGV (last "
                      "output: nvImageCodec)")
    result = diagnose(crashed)
    line = {c.name: c for c in result.checks}["roi decode"]
    assert line.status == "warn" and line.detail == ("DALI's GPU ROI decoding failed: the decoding process was "
                                                     "killed by SIGSEGV (last output: nvImageCodec)")
    assert line.fix.startswith("decode whole images: dali-cutmix train --decode full")
    assert result.gpu_path, "--decode full keeps the GPU path"
    skipped = checks(machine(roi_decode=None, roi_decode_detail="not run: no GPU (DALI sees no CUDA GPU on this "
                                                                "machine)"))["roi decode"]
    assert (skipped.status, skipped.detail) == ("skip", "not run: no GPU (DALI sees no CUDA GPU on this machine)")


def test_roi_decode_runs_only_where_dali_sees_a_gpu():
    assert doctor.read_roi_decode(0) == {"roi_decode_detail": "not run: no GPU (DALI sees no CUDA GPU on this "
                                                              "machine)"}
    assert doctor.read_roi_decode(None, "ImportError: no nvidia.dali") == {
        "roi_decode_detail": "not run: DALI cannot be imported (ImportError: no nvidia.dali)"}


def test_the_roi_decode_smoke_process_runs_its_graph(device):
    """The subprocess's own code works (it imports only numpy, PIL and DALI): on the GPU it is the smoke test itself
    (nvImageCodec issue #55: the "mixed" ROI decoder on GPU 0), on the CPU the same graph on CPU operators."""
    status, detail = doctor.smoke_roi_decode(device)
    assert status == "ok", detail
    decoder = "mixed" if device == "gpu" else "cpu"
    assert re.fullmatch(rf"decoders\.image_random_crop on {decoder}: 3 batches of 16 decoded and resized to "
                        r"\(16, 224, 224, 3\) in \d+\.\d s", detail)


def test_a_crashing_or_hanging_smoke_process_is_named(monkeypatch):
    monkeypatch.setattr(doctor, "ROI_SMOKE_CODE", "import os, signal; print('nvImageCodec says hi'); "
                                                  "os.kill(os.getpid(), signal.SIGSEGV)")
    assert doctor.smoke_roi_decode("gpu") == ("failed", "the decoding process was killed by SIGSEGV (last output: "
                                                        "nvImageCodec says hi)")
    monkeypatch.setattr(doctor, "ROI_SMOKE_CODE", "import sys; sys.exit('no GPU for you')")
    assert doctor.smoke_roi_decode("gpu") == ("failed", "the decoding process exited with code 1: no GPU for you")
    monkeypatch.setattr(doctor, "ROI_SMOKE_CODE", "import time; time.sleep(30)")
    assert doctor.smoke_roi_decode("gpu", timeout=0.5) == ("failed", "no answer in 0.5 s (killed)")


def test_the_reports_hold_every_check():
    facts = machine(driver="550.54.15", torch_gpus=0)
    result = diagnose(facts)
    text = doctor.report_text(result)
    lines = text.splitlines()
    assert [line.split()[1] for line in lines if line.split()[0] in ("ok", "warn", "fail", "skip")] == \
        ["python", "torch", "dali", "driver", "gpus", "jpeg", "nccl", "native", "roi"]
    assert any(line.strip().startswith("fix: install torch's CUDA 12 build") for line in lines)
    assert lines[-1] == f"verdict: {result.verdict}; exit code 1"
    data = json.loads(json.dumps(doctor.report_json(facts, result)))
    assert data["exit_code"] == 1 and data["facts"]["driver"] == "550.54.15"
    assert data["facts"]["gpus"][0] == {"name": H100, "capability": [9, 0]}


# ---- the real command on this machine --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``dali-cutmix doctor --build --cache DIR --json`` run once, as a user runs it: ``(DIR, exit code, its JSON)``."""
    folder = tmp_path_factory.mktemp("doctor-cache")
    result = subprocess.run([sys.executable, "-m", "dali_cutmix.cli", "doctor", "--build", "--cache", str(folder),
                             "--json"], capture_output=True, text=True)
    assert "Traceback" not in result.stderr, result.stderr
    return folder, result.returncode, json.loads(result.stdout)


def _cpu_machine():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU verdict is tested on machines without one")


def test_build_with_a_cache_folder_writes_the_library_there(built):
    folder, _, data = built
    libraries = list(folder.glob("native/*/libdali_cutmix_ops.so"))
    assert len(libraries) == 1 and libraries[0].stat().st_size > 0
    assert data["facts"]["native_path"] == str(libraries[0]) and data["facts"]["native_built_now"]
    native = [c for c in data["checks"] if c["name"] == "native ops"][0]
    assert native["status"] == "ok" and "built now" in native["detail"]


def test_doctor_on_this_machine_says_cpu_only_and_exits_1(built, monkeypatch, capsys):
    _cpu_machine()
    folder, code, data = built
    assert code == 1 and data["exit_code"] == 1 and data["cpu_path"] and not data["gpu_path"]
    assert {c["name"]: c["status"] for c in data["checks"]}["driver"] == "fail"
    monkeypatch.setenv("DALI_CUTMIX_CACHE", str(folder))
    assert main(["doctor", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"].startswith("only the CPU path can run") and data["facts"]["driver"] is None
    assert data["facts"]["native_cache"] == str(folder) and not data["facts"]["native_built_now"]
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^fail +driver +no NVIDIA driver found", out, re.M)
    assert re.search(r"^ok +native ops +.*(already built, loaded)", out, re.M)
    assert re.search(r"^skip +roi decode +not run: no GPU \(DALI sees no CUDA GPU on this machine\)$", out, re.M)
    roi = {c["name"]: c for c in data["checks"]}["roi decode"]
    assert roi["status"] == "skip" and data["facts"]["roi_decode"] is None
    assert str(folder) in out, "$DALI_CUTMIX_CACHE is the default cache"
    last = out.splitlines()[-1]
    assert last.startswith("verdict: only the CPU path can run") and last.endswith("exit code 1")


def test_without_a_compiler_doctor_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert main(["doctor", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^fail +native ops +cannot be built: .*'no-such-compiler-here' was not found", out, re.M)
    assert "verdict: neither path can run" in out


def test_a_failing_compiler_with_no_output_still_says_what_failed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CXX", "/bin/false")
    assert main(["doctor", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^fail +native ops +cannot be built: .*'/bin/false' exited with code 1 and printed nothing",
                     out, re.M)
    assert "set CXX to a working C++ compiler" in out


def test_bad_usage_is_one_line_and_exit_2(tmp_path, capsys):
    result = subprocess.run([sys.executable, "-m", "dali_cutmix.cli", "doctor", "--no-such-flag"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "--no-such-flag" in result.stderr
    assert "Traceback" not in result.stderr
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["doctor", "--cache", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cache" in err and "is a file" in err


# ---- the README's Install section --------------------------------------------------------------------------------

def _readme_sections():
    text = (ROOT / "README.md").read_text()
    return [s.split("\n", 1) for s in re.split(r"^## ", text, flags=re.M)[1:]]


def test_the_install_section_follows_the_quick_start():
    titles = [title for title, _ in _readme_sections()]
    assert titles[titles.index("Quick start") + 1] == "Install"


def test_the_install_commands_pair_dali_with_torch():
    tomllib = pytest.importorskip("tomllib")
    install = dict(_readme_sections())["Install"]
    blocks = re.findall(r"```bash\n(.*?)```", install, flags=re.S)
    cuda12 = next(b for b in blocks if "download.pytorch.org" in b)
    cuda13 = next(b for b in blocks if "nvidia-dali-cuda130" in b)
    assert f"--index-url {doctor.TORCH_CUDA12_INDEX}" in cuda12 and "pip install -e ." in cuda12
    assert "nvidia-dali-cuda130" not in cuda12 and "dali-cutmix doctor" in cuda12
    assert "pip install --no-deps -e ." in cuda13 and "dali-cutmix doctor" in cuda13
    # The CUDA 13 path skips the package's dependencies, so its first line installs them: all of them, with
    # DALI's CUDA 13 wheel in place of the default one.
    first = cuda13.splitlines()[0].split("#")[0].split()
    assert first[:2] == ["pip", "install"]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in deps}
    assert "nvidia-dali-cuda120" in names
    assert set(first[2:]) == names - {"nvidia-dali-cuda120"} | {"nvidia-dali-cuda130"}
    # The driver minimums the README states are the ones doctor checks.
    assert f">= {doctor.shown_version(doctor.MIN_DRIVER[12])}" in install
    assert f">= {doctor.shown_version(doctor.MIN_DRIVER[13])}" in install
    assert "DALI_CUTMIX_CACHE" in install and "dali-cutmix doctor --build --cache" in install

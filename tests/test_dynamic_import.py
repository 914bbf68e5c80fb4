"""DALI Dynamic's operator table and the import order: ``ndd`` builds its table when first imported, so the stage's
native operators must reach it whether ``ndd`` was imported before or after they were loaded. Each case runs in a
fresh interpreter (the order is per process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import skip_without_gpu

ROOT = Path(__file__).resolve().parents[1]

RUN_THE_STAGE = """
import json, sys
import numpy as np
{first}
from dali_cutmix import dynamic
import nvidia.dali.experimental.dynamic as ndd
rng = np.random.default_rng(0)
images = ndd.batch([rng.integers(0, 256, (12, 16, 3)).astype(np.uint8) for _ in range(4)], layout="HWC")
images = images.gpu() if sys.argv[1] == "gpu" else images
labels = ndd.batch([np.array(i, np.int32) for i in range(4)])
mixed, targets, params = dynamic.cutmix(images, labels, num_classes=4, rng=ndd.random.RNG(seed=1),
                                        return_params=True)
print(json.dumps(dict(lam=[float(np.asarray(t)) for t in params["lam"].tensors],
                      sums=np.stack([np.asarray(t) for t in targets.cpu().tensors]).sum(1).round(6).tolist(),
                      device=mixed.device.device_type, added=dynamic.NATIVE_SCHEMAS["DaliCutmixParams"] in dir(ndd))))
"""

ORDERS = {
    # What users do: DALI Dynamic first, our operators loaded later (by the first call).
    "ndd-first": "import nvidia.dali.experimental.dynamic",
    # The operators loaded before ndd's first import: its own table has them.
    "operators-first": "from dali_cutmix.native import load; load()",
    # Neither imported before the call.
    "neither": "",
}


def run_python(code: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("order", list(ORDERS))
def test_the_stage_runs_whatever_the_import_order(order, device):
    skip_without_gpu(device)
    out = json.loads(run_python(RUN_THE_STAGE.format(first=ORDERS[order]), device).splitlines()[-1])
    assert out["added"] and out["device"] == device
    assert len(set(out["lam"])) == 1 and 0 <= out["lam"][0] <= 1, "batch mode: one lam"
    assert out["sums"] == [1.0] * 4


def test_ndd_imported_first_lacks_the_operators_until_they_are_added():
    """The private route (``add_to_ndd_table``) is needed, and is what adds them: DALI's ``load_library`` alone
    leaves ndd's table without them."""
    code = """
import nvidia.dali.experimental.dynamic as ndd
from dali_cutmix.native import load
from dali_cutmix.dynamic import NATIVE_SCHEMAS, add_to_ndd_table
load()
before = [hasattr(ndd, n) for n in NATIVE_SCHEMAS.values()]
add_to_ndd_table(ndd)
add_to_ndd_table(ndd)  # a second call adds nothing
after = [hasattr(ndd, n) for n in NATIVE_SCHEMAS.values()]
print(before, after, ndd.dali_cutmix_params._schema_name)
"""
    assert run_python(code).split() == ["[False,", "False]", "[True,", "True]", "DaliCutmixParams"]


def test_importing_the_dynamic_module_loads_neither_dali_nor_torch():
    code = """
import sys
import dali_cutmix, dali_cutmix.dynamic
print(sorted(m for m in ("nvidia.dali", "torch", "torchdata") if m in sys.modules))
"""
    assert run_python(code).strip() == "[]"

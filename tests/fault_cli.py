"""``dali-cutmix`` with a fault installed first, for the tests of crashes, dying ranks and disks that stop taking
data: ``python tests/fault_cli.py ARGS`` runs ``dali-cutmix ARGS`` after running the Python file that
``$DALI_CUTMIX_TEST_FAULT`` names (:func:`faults.fault_env` writes it).

The fault runs wherever the command runs: in this process, in each process torchrun starts with this script, and in
each rank the command spawns itself (a spawned process runs its parent's main script, as ``__mp_main__``, before
it takes up its work). Only the processes a fault test starts run it; the test process and every other test see
the product unpatched."""

import os
import sys
from pathlib import Path

FAULT = os.environ.get("DALI_CUTMIX_TEST_FAULT")
if FAULT:
    exec(compile(Path(FAULT).read_text(), FAULT, "exec"), {"__name__": "dali_cutmix_test_fault"})

if __name__ == "__main__":
    from dali_cutmix.cli import main

    sys.exit(main())

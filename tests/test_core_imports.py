"""The torch-only core never imports lightning: usable from a plain PyTorch loop, testable alone."""

import subprocess
import sys

import pytest

CORE = ["lt_lightning", "lt_lightning.registry", "lt_lightning.masks", "lt_lightning.step", "lt_lightning.state", "lt_lightning.ticket",
        "lt_lightning.records", "lt_lightning.layout", "lt_lightning.timeline", "lt_lightning.files", "lt_lightning.pruning",
        "lt_lightning.pruning.spec", "lt_lightning.controls", "lt_lightning.supermask", "lt_lightning.analysis",
        "lt_lightning.reporting.aggregate", "lt_lightning.dynamic", "lt_lightning.export"]


def test_core_modules_do_not_import_lightning():
    # One fresh interpreter for all of them (each costs a torch import); on failure, it names what each pulled in.
    code = (
        "import importlib, sys\n"
        "found = {}\n"
        f"for module in {CORE!r}:\n"
        "    importlib.import_module(module)\n"
        "    bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning',"
        " 'lightning_fabric'))\n"
        "    if bad and not found:\n"
        "        found[module] = bad[:5]\n"
        "print(found)\n"
        "sys.exit(1 if found else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"first core module that imports lightning: {done.stdout.strip()} {done.stderr[-500:]}"


def test_the_package_still_exports_the_callbacks():
    import lt_lightning

    assert lt_lightning.IMPCallback.__module__ == "lt_lightning.callbacks.imp"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        lt_lightning.Nope  # noqa: B018

import os
import sys

import pytest

# Two cores are shared by the suite; several torch threads per test only add contention.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Speed is measured in benchmarks/, not asserted: hypothesis's per-example deadline (200 ms)
# fails examples on a loaded CI machine (seen: test_data_augment.py::test_first_points at
# 12 minutes for the first 61 tests beside two training jobs).
try:
    from hypothesis import settings as _hypothesis_settings

    # print_blob: a failure on CI prints the @reproduce_failure line that replays it here.
    _hypothesis_settings.register_profile("bingnn", deadline=None, print_blob=True)
    _hypothesis_settings.load_profile("bingnn")
except ImportError:  # the engine-only test runs (scripts/test_arm64.sh) may lack hypothesis
    pass

try:  # the engine's tests also run where PyTorch is absent (scripts/test_arm64.sh)
    import torch
except ImportError:
    torch = None


@pytest.fixture(autouse=True)
def _seed_and_threads():
    if torch is not None:
        torch.manual_seed(0)
        torch.set_num_threads(1)
    yield


def pytest_terminal_summary(terminalreporter):
    """Say which native dispatch levels the run exercised: the kernel tests loop over the
    levels this CPU supports, so a level the CPU lacks is silently untested here."""
    native = sys.modules.get("bingnn._native")
    if native is None:
        return
    calls = native.dispatch_calls()
    feats = native.cpu_features()
    ran = [f"{lvl} ({n} kernel calls)" for lvl, n in calls.items() if n]
    idle = []
    for lvl, n in calls.items():
        if n:
            continue
        if lvl not in feats["compiled_levels"]:
            why = f"not compiled in this {feats['arch']} build"
        elif lvl not in feats["levels"]:
            why = "not supported by this CPU"
        else:
            why = "no kernel ran at it"
        idle.append(f"{lvl} ({why})")
    write = terminalreporter.write_line
    write(f"native dispatch levels exercised: {', '.join(ran) or 'none'}")
    if idle:
        write(f"native dispatch levels NOT exercised: {', '.join(idle)}")

"""Build the one native extension, ``bingnn._native``.

Runtime CPU dispatch lives in the C++ sources (per-function ``target`` attributes and
``__builtin_cpu_supports`` on x86-64, the hardware capabilities on AArch64), so the extension is
compiled for the baseline ISA only and one wheel runs on any x86-64 CPU (AVX-512 VPOPCNTDQ, AVX2
or scalar path chosen at import) or any AArch64 CPU (NEON or scalar).

Environment:
    BINGNN_PORTABLE_ONLY=1   build the portable scalar path alone (no SIMD code at all), e.g.
                             ``BINGNN_PORTABLE_ONLY=1 pip install .``
    NPY_NUM_BUILD_JOBS=N     compile the kernel files with N parallel jobs.

Floating point is pinned with ``-ffp-contract=off``: the compiler never fuses ``a * b + c`` on
its own (GCC does by default on AArch64 and with ``-march=native``, which would change the
engine's float32 results); the engine's fused multiply-adds are explicit ``std::fma`` calls.
``scripts/test_arm64.sh`` and ``scripts/test_sanitizers.sh`` build with these same flags.
"""

import glob
import os

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

SOURCES = sorted(glob.glob("csrc/*.cpp"))
HEADERS = sorted(glob.glob("csrc/*.hpp"))
#: Compiler flags of every build (the cross and sanitizer builds reuse them).
COMPILE_ARGS = ["-O3", "-ffp-contract=off"]


def portable_only() -> bool:
    """``BINGNN_PORTABLE_ONLY`` set to anything but empty/0/false/no/off."""
    value = os.environ.get("BINGNN_PORTABLE_ONLY", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def define_macros() -> list[tuple[str, str]]:
    return [("BINGNN_PORTABLE_ONLY", "1")] if portable_only() else []


class BuildExt(build_ext):
    """``build_ext`` that rebuilds everything when the configuration (``BINGNN_PORTABLE_ONLY``)
    changed since the last build in this tree: setuptools decides what to recompile and relink
    from file times only, so it would otherwise reuse objects compiled the other way."""

    def run(self) -> None:
        config = f"portable_only={portable_only()}\n"
        stamp = os.path.join(self.build_temp, "bingnn-build-config")
        try:
            with open(stamp) as f:
                changed = f.read() != config
        except OSError:
            changed = True
        if changed:
            self.force = True
        super().run()
        os.makedirs(self.build_temp, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(config)


if __name__ == "__main__":
    # Compile the kernel files in parallel (NPY_NUM_BUILD_JOBS overrides the job count).
    ParallelCompile("NPY_NUM_BUILD_JOBS").install()

    ext = Pybind11Extension(
        "bingnn._native",
        SOURCES,
        include_dirs=["csrc"],
        depends=HEADERS,
        cxx_std=17,
        extra_compile_args=COMPILE_ARGS,
        define_macros=define_macros(),
    )

    setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})

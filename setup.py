"""Build the one native extension, ``bingnn._native``.

Runtime CPU dispatch lives in the C++ sources (per-function ``target`` attributes and
``__builtin_cpu_supports``), so the extension is compiled for the baseline ISA only and one wheel
runs on any x86-64 CPU (AVX-512 VPOPCNTDQ, AVX2 or scalar path chosen at import); on other
architectures only the portable scalar path is compiled. Define ``BINGNN_PORTABLE_ONLY`` to
build the portable path alone on x86-64 too.
"""

import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

# Compile the kernel files in parallel (NPY_NUM_BUILD_JOBS overrides the job count).
ParallelCompile("NPY_NUM_BUILD_JOBS").install()

ext = Pybind11Extension(
    "bingnn._native",
    sorted(glob.glob("csrc/*.cpp")),
    include_dirs=["csrc"],
    depends=sorted(glob.glob("csrc/*.hpp")),
    cxx_std=17,
    extra_compile_args=["-O3"],
)

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})

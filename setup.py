"""Build the one native extension, ``bingnn._native``.

Runtime CPU dispatch lives in the C++ sources (per-function ``target`` attributes), so the
extension is compiled for the baseline ISA only and one wheel runs on any x86-64 CPU.
"""

import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

ext = Pybind11Extension(
    "bingnn._native",
    sorted(glob.glob("csrc/*.cpp")),
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=["-O3"],
)

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})

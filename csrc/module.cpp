// Python bindings of the native core. Kernels live in their own files; this file only binds.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
    m.doc() = "bingnn native XNOR/popcount kernels";
}

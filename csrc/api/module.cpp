// flash_attn4._C is imported for its static initialisers, which register the fa4 ops with the
// dispatcher. It exposes no Python functions, so it needs no pybind11 and builds against the Python
// limited API: one abi3 binary for every CPython >= 3.10 (torch >= 2.10 needs 3.10).
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

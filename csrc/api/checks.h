// Argument checking for the op layer: every failure names the argument, what was expected and what
// was given, and surfaces in Python as an exception (never a crash).
#pragma once

#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/util/Exception.h>

#include <optional>
#include <sstream>
#include <string>

namespace fa4::api {

using torch::stable::Tensor;
using ScalarType = torch::headeronly::ScalarType;

#define FA4_CHECK(cond, ...) STD_TORCH_CHECK((cond), "fa4: ", __VA_ARGS__)
// Unsupported-but-valid requests: the Python layer turns this prefix into NotImplementedError.
#define FA4_CHECK_IMPLEMENTED(cond, ...) STD_TORCH_CHECK((cond), "fa4: not implemented: ", __VA_ARGS__)

std::string dtype_name(ScalarType t);
std::string shape_of(const Tensor& t);
std::string device_of(const Tensor& t);

void check_dim(const Tensor& t, const char* name, int64_t dim, const char* layout);
void check_size(const Tensor& t, const char* name, int64_t axis, int64_t expected, const char* what);
void check_dtype(const Tensor& t, const char* name, ScalarType expected);
void check_same_device(const Tensor& t, const char* name, const Tensor& ref, const char* ref_name);
void check_last_dim_contiguous(const Tensor& t, const char* name);
void check_contiguous(const Tensor& t, const char* name);
// The FA4_* environment knobs that the CUDA kernels read (A/B switches for tests and benchmarks:
// FA4_FWD_PAGED_PATH, FA4_BWD_HEAD_SPLITS, FA4_BWD_SERIAL_MAIN / _CONVERT, FA4_BWD_ZERO_DQ_ACCUM):
// a value they would not recognise raises instead of being ignored. Checked on every device, so
// a typo shows wherever the call runs.
void check_env_knobs();

}  // namespace fa4::api

#include "api/checks.h"

#include <cstdlib>
#include <string>

#include <torch/csrc/stable/device.h>

namespace fa4::api {

std::string dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Half: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Float: return "float32";
    case ScalarType::Double: return "float64";
    case ScalarType::Int: return "int32";
    case ScalarType::Long: return "int64";
    case ScalarType::Bool: return "bool";
    default: return "scalar type #" + std::to_string(static_cast<int>(t));
  }
}

std::string shape_of(const Tensor& t) {
  std::ostringstream s;
  s << "(";
  for (int64_t i = 0; i < t.dim(); ++i) s << (i ? ", " : "") << t.size(i);
  s << (t.dim() == 1 ? ",)" : ")");
  return s.str();
}

std::string device_of(const Tensor& t) {
  if (t.is_cpu()) return "cpu";
  if (t.is_cuda()) return "cuda:" + std::to_string(t.get_device_index());
  return "device type #" + std::to_string(static_cast<int>(t.device().type()));
}

void check_dim(const Tensor& t, const char* name, int64_t dim, const char* layout) {
  FA4_CHECK(t.dim() == dim, name, " must be ", dim, "-D ", layout, ", got shape ", shape_of(t));
}

void check_size(const Tensor& t, const char* name, int64_t axis, int64_t expected, const char* what) {
  FA4_CHECK(t.size(axis) == expected, name, ".shape[", axis, "] (", what, ") must be ", expected,
            ", got ", t.size(axis), " (shape ", shape_of(t), ")");
}

void check_dtype(const Tensor& t, const char* name, ScalarType expected) {
  FA4_CHECK(t.scalar_type() == expected, name, " must have dtype ", dtype_name(expected), ", got ",
            dtype_name(t.scalar_type()));
}

void check_same_device(const Tensor& t, const char* name, const Tensor& ref, const char* ref_name) {
  FA4_CHECK(t.device() == ref.device(), name, " must be on the same device as ", ref_name, " (",
            device_of(ref), "), got ", device_of(t));
}

void check_last_dim_contiguous(const Tensor& t, const char* name) {
  FA4_CHECK(t.size(-1) <= 1 || t.stride(-1) == 1, name,
            " must have a contiguous last dimension (stride 1), got stride ", t.stride(-1));
}

void check_contiguous(const Tensor& t, const char* name) {
  FA4_CHECK(t.is_contiguous(), name, " must be contiguous");
}

void check_env_knobs() {
  auto value = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
  };
  const std::string path = value("FA4_FWD_PAGED_PATH");
  FA4_CHECK(path.empty() || path == "gather" || path == "boxes",
            "environment variable FA4_FWD_PAGED_PATH must be 'gather', 'boxes' or unset, got '",
            path, "'");
  const std::string splits = value("FA4_BWD_HEAD_SPLITS");
  FA4_CHECK(splits.empty() || (splits.size() <= 9 &&
                               splits.find_first_not_of("0123456789") == std::string::npos &&
                               std::stol(splits) >= 1),
            "environment variable FA4_BWD_HEAD_SPLITS must be a positive integer or unset, got '",
            splits, "'");
  for (const char* name : {"FA4_BWD_SERIAL_MAIN", "FA4_BWD_SERIAL_CONVERT", "FA4_BWD_ZERO_DQ_ACCUM"}) {
    const std::string flag = value(name);
    FA4_CHECK(flag.empty() || flag == "0" || flag == "1", "environment variable ", name,
              " must be 0, 1 or unset, got '", flag, "'");
  }
}

}  // namespace fa4::api

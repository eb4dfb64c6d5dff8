// Argument checks for public entry points: one helper per condition, each message naming
// the function, the argument, what was expected and what came. Layers below trust inputs.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <initializer_list>
#include <sstream>
#include <string>

namespace comba::core {

inline std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << ']';
  return out.str();
}

// Checks arguments of the function named `fn`; every failure is a c10::Error (Python:
// RuntimeError) whose text starts with "<fn>: argument `<name>`".
class ArgChecker {
 public:
  // `fn` must outlive the checker (a string literal at every call site).
  explicit ArgChecker(const char* fn) : fn_(fn) {}

  const ArgChecker& defined(const at::Tensor& t, const char* name) const {
    TORCH_CHECK(t.defined(), fn_, ": argument `", name, "` must be a defined tensor");
    return *this;
  }

  const ArgChecker& rank(const at::Tensor& t, const char* name, int64_t rank,
                         const char* layout) const {
    defined(t, name);
    TORCH_CHECK(t.dim() == rank, fn_, ": argument `", name, "` expected ", rank, "-D ",
                layout, ", got ", t.dim(), "-D tensor of shape ", shape_str(t.sizes()));
    return *this;
  }

  const ArgChecker& shape(const at::Tensor& t, const char* name, at::IntArrayRef expected,
                          const char* layout) const {
    rank(t, name, static_cast<int64_t>(expected.size()), layout);
    TORCH_CHECK(t.sizes() == expected, fn_, ": argument `", name, "` expected shape ", layout,
                " = ", shape_str(expected), ", got ", shape_str(t.sizes()));
    return *this;
  }

  const ArgChecker& floating(const at::Tensor& t, const char* name) const {
    const auto dt = t.scalar_type();
    TORCH_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kHalf || dt == at::kBFloat16,
                fn_, ": argument `", name,
                "` expected a floating dtype (float32, float64, float16, bfloat16), got ", dt);
    return *this;
  }

  const ArgChecker& dtype_in(const at::Tensor& t, const char* name,
                             std::initializer_list<at::ScalarType> allowed) const {
    for (const auto dt : allowed) {
      if (t.scalar_type() == dt) return *this;
    }
    std::ostringstream list;  // built only on failure: checks cost nothing on the hot path
    const char* separator = "";
    for (auto it = allowed.begin(); it != allowed.end(); ++it) {
      // Callers list dtypes that may coincide ({q's dtype, Float}): name each once.
      if (std::find(allowed.begin(), it, *it) != it) continue;
      list << separator << *it;
      separator = " or ";
    }
    TORCH_CHECK(false, fn_, ": argument `", name, "` expected dtype ", list.str(), ", got ",
                t.scalar_type());
    return *this;
  }

  const ArgChecker& device(const at::Tensor& t, const char* name, const at::Device& expected,
                           const char* reference) const {
    TORCH_CHECK(t.device() == expected, fn_, ": argument `", name, "` expected to be on ",
                expected, " like `", reference, "`, got ", t.device());
    return *this;
  }

  template <typename... Args>
  void require(bool condition, const Args&... message) const {
    TORCH_CHECK(condition, fn_, ": ", message...);
  }

  const char* fn() const { return fn_; }

 private:
  const char* fn_;
};

}  // namespace comba::core

// The safetensors format (https://github.com/huggingface/safetensors), without torch:
//
//   [8 bytes]  N, little-endian uint64: the header length
//   [N bytes]  a UTF-8 JSON object, padded with spaces so that 8 + N is a multiple of 8:
//              {"__metadata__": {"k": "v", ...},
//               "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//   [rest]     the data section; offsets are relative to its start, every byte of it
//              belongs to exactly one tensor (no holes, no overlaps), little-endian, C order.
//
// Reading maps the file and validates the whole header before anything is handed out, so
// that a malformed or truncated file is an exception naming the file and the problem, never
// a crash or a silent misread. The torch side (tensors.h) builds on these views.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "comba/core/mapped_file.h"

namespace comba::io {

// A file that is not what it claims to be (bad header, offsets, sizes, missing tensors).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Dtype { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

// "F32", "BF16", ... (the format's spelling).
const char* dtype_name(Dtype dtype);
// Throws FormatError for a name the format does not define.
Dtype dtype_from_name(const std::string& name);
size_t dtype_size(Dtype dtype);

// Tensor bytes in a file: offsets relative to the data section.
struct TensorEntry {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t nbytes() const { return end - begin; }
};

// The parsed, validated header of a file whose first `file_size` bytes are at `data`.
struct Header {
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::vector<TensorEntry> tensors;             // in data order
  uint64_t data_start = 0;                      // 8 + N
};

// Validates everything the format promises; `label` (a path) starts every message.
Header parse_header(const uint8_t* data, size_t file_size, const std::string& label);

// A mapped, validated safetensors file. Views stay valid while the object lives.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const std::vector<TensorEntry>& tensors() const { return header_.tensors; }
  // nullptr when absent.
  const TensorEntry* find(const std::string& name) const;
  // Throws FormatError naming the file when absent.
  const TensorEntry& at(const std::string& name) const;
  // First byte of the entry's data (not aligned in general: copy before typed access).
  const uint8_t* bytes(const TensorEntry& entry) const { return file_.data() + header_.data_start + entry.begin; }

 private:
  core::MappedFile file_;
  Header header_;
  std::map<std::string, size_t> index_;
};

// One tensor to write: `data` holds nbytes = prod(shape) * dtype_size(dtype) bytes.
struct TensorBytes {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// The header bytes (length prefix + padded JSON) for these tensors laid out in the given
// order, and each tensor's offsets. Exposed for the writer and the tests.
std::string build_header(const std::vector<TensorBytes>& tensors,
                         const std::map<std::string, std::string>& metadata);

// Writes a file: tensors ordered by decreasing dtype size, then name (so that every tensor
// starts aligned to its element size), header padded to 8 bytes. Written atomically
// (core/atomic_file.h), streamed from the tensors' memory: a crash never leaves a half
// file under `path`.
void write_safetensors(const std::string& path, std::vector<TensorBytes> tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace comba::io

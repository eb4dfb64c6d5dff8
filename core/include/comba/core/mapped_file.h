// A read-only memory mapping of a whole file, owned RAII-style: checkpoints and token
// shards of many gigabytes are read in place (the OS pages in what is touched) instead of
// being copied into memory first. Move-only; the mapping ends with the object. Torch-free.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace comba::core {

class MappedFile {
 public:
  // How the mapping will be read: kRandom turns off read-ahead (samples at random offsets).
  enum class Access { kSequential, kRandom };

  // Maps `path`; throws std::runtime_error naming the file when it cannot be opened or
  // mapped. An empty file maps to size() == 0 and data() == nullptr.
  explicit MappedFile(const std::string& path, Access access = Access::kSequential);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace comba::core

// safetensors reading (validate the whole header up front) and writing (see safetensors.h).
#include "comba/io/safetensors.h"

#include "comba/core/atomic_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>

namespace comba::io {
namespace {

using nlohmann::json;

// The reference implementation refuses headers past 100 MB: a corrupt length is then
// caught before a huge allocation.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kAlign = 8;

struct DtypeInfo {
  Dtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {Dtype::BOOL, "BOOL", 1}, {Dtype::U8, "U8", 1},   {Dtype::I8, "I8", 1},
    {Dtype::F8_E5M2, "F8_E5M2", 1}, {Dtype::F8_E4M3, "F8_E4M3", 1},
    {Dtype::I16, "I16", 2},   {Dtype::U16, "U16", 2}, {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2}, {Dtype::I32, "I32", 4}, {Dtype::U32, "U32", 4},
    {Dtype::F32, "F32", 4},   {Dtype::F64, "F64", 8}, {Dtype::I64, "I64", 8},
    {Dtype::U64, "U64", 8},
};

const DtypeInfo& info(Dtype dtype) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d;
  }
  throw std::logic_error("safetensors: unhandled Dtype");
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// prod(shape) * element size, or nullopt-like false on overflow.
bool byte_size(const std::vector<int64_t>& shape, size_t element, uint64_t* out) {
  uint64_t n = element;
  for (const int64_t d : shape) {
    if (d < 0) return false;
    const auto ud = static_cast<uint64_t>(d);
    if (ud != 0 && n > std::numeric_limits<uint64_t>::max() / ud) return false;
    n *= ud;
  }
  *out = n;
  return true;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void write_u64_le(uint64_t v, char* p) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

TensorEntry parse_entry(const std::string& name, const json& value, const std::string& label) {
  const std::string where = label + ": tensor \"" + name + "\"";
  if (!value.is_object()) throw FormatError(where + ": expected a JSON object, got " + value.dump());
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) throw FormatError(where + ": missing field \"" + key + "\"");
  }
  TensorEntry entry;
  entry.name = name;
  const json& dtype = value.at("dtype");
  if (!dtype.is_string()) throw FormatError(where + ": \"dtype\" expected a string, got " + dtype.dump());
  try {
    entry.dtype = dtype_from_name(dtype.get<std::string>());
  } catch (const FormatError& e) {
    throw FormatError(where + ": " + e.what());
  }
  const json& shape = value.at("shape");
  if (!shape.is_array()) throw FormatError(where + ": \"shape\" expected an array, got " + shape.dump());
  for (const json& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      throw FormatError(where + ": \"shape\" expected non-negative integers, got " + shape.dump());
    }
    entry.shape.push_back(d.get<int64_t>());
  }
  const json& offsets = value.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    throw FormatError(where + ": \"data_offsets\" expected [begin, end] non-negative integers, got " +
                      offsets.dump());
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  if (entry.end < entry.begin) {
    throw FormatError(where + ": data_offsets [" + std::to_string(entry.begin) + ", " +
                      std::to_string(entry.end) + "] end before begin");
  }
  uint64_t expected = 0;
  if (!byte_size(entry.shape, dtype_size(entry.dtype), &expected)) {
    throw FormatError(where + ": shape " + shape_str(entry.shape) + " overflows");
  }
  if (expected != entry.nbytes()) {
    throw FormatError(where + ": shape " + shape_str(entry.shape) + " of " + dtype_name(entry.dtype) +
                      " needs " + std::to_string(expected) + " bytes, data_offsets [" +
                      std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "] hold " +
                      std::to_string(entry.nbytes()));
  }
  return entry;
}

}  // namespace

const char* dtype_name(Dtype dtype) { return info(dtype).name; }
size_t dtype_size(Dtype dtype) { return info(dtype).size; }

Dtype dtype_from_name(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.dtype;
  }
  std::string known;
  for (const auto& d : kDtypes) known += std::string(known.empty() ? "" : ", ") + d.name;
  throw FormatError("unknown dtype \"" + name + "\" (expected one of " + known + ")");
}

Header parse_header(const uint8_t* data, size_t file_size, const std::string& label) {
  if (file_size < 8) {
    throw FormatError(label + ": truncated: " + std::to_string(file_size) +
                      " bytes, shorter than the 8-byte header length");
  }
  const uint64_t n = read_u64_le(data);
  if (n > file_size - 8) {
    throw FormatError(label + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                      std::to_string(file_size) + " bytes, so at most " + std::to_string(file_size - 8) +
                      "): truncated or not a safetensors file");
  }
  if (n > kMaxHeaderBytes) {
    throw FormatError(label + ": header length " + std::to_string(n) + " exceeds the format's limit of " +
                      std::to_string(kMaxHeaderBytes) + " bytes");
  }
  const char* text = reinterpret_cast<const char*>(data + 8);
  json root;
  try {
    root = json::parse(text, text + n);
  } catch (const json::parse_error& e) {
    throw FormatError(label + ": bad JSON header: " + e.what());
  }
  if (!root.is_object()) throw FormatError(label + ": header expected a JSON object, got " + root.type_name());

  Header header;
  header.data_start = 8 + n;
  const uint64_t data_size = file_size - header.data_start;
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) throw FormatError(label + ": \"__metadata__\" expected an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          throw FormatError(label + ": \"__metadata__\" value of \"" + mk + "\" expected a string, got " + mv.dump());
        }
        header.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    header.tensors.push_back(parse_entry(key, value, label));
  }

  std::stable_sort(header.tensors.begin(), header.tensors.end(),
                   [](const TensorEntry& a, const TensorEntry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  uint64_t covered = 0;
  const TensorEntry* previous = nullptr;
  for (const auto& t : header.tensors) {
    const std::string range = "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
    if (t.end > data_size) {
      throw FormatError(label + ": tensor \"" + t.name + "\": data_offsets " + range +
                        " out of range: the data section has " + std::to_string(data_size) +
                        " bytes (file truncated or offsets wrong)");
    }
    if (t.begin < covered) {
      throw FormatError(label + ": tensor \"" + t.name + "\": data_offsets " + range + " overlap tensor \"" +
                        (previous ? previous->name : std::string("?")) + "\" which ends at " +
                        std::to_string(covered));
    }
    if (t.begin > covered) {
      throw FormatError(label + ": tensor \"" + t.name + "\": data_offsets " + range + " leave bytes [" +
                        std::to_string(covered) + ", " + std::to_string(t.begin) +
                        ") unused (the format allows no holes)");
    }
    covered = t.end;
    previous = &t;
  }
  if (covered != data_size) {
    throw FormatError(label + ": the data section has " + std::to_string(data_size) + " bytes but the tensors cover " +
                      std::to_string(covered) + " (trailing bytes)");
  }
  return header;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  header_ = parse_header(file_.data(), file_.size(), path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

const TensorEntry& SafetensorsFile::at(const std::string& name) const {
  const TensorEntry* entry = find(name);
  if (entry == nullptr) throw FormatError(path() + ": no tensor named \"" + name + "\"");
  return *entry;
}

std::string build_header(const std::vector<TensorBytes>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps the data order in the text, which makes files easy to inspect.
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) root["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (root.contains(t.name) || t.name == "__metadata__") {
      throw std::invalid_argument("safetensors: duplicate or reserved tensor name \"" + t.name + "\"");
    }
    uint64_t nbytes = 0;
    if (!byte_size(t.shape, dtype_size(t.dtype), &nbytes)) {
      throw std::invalid_argument("safetensors: tensor \"" + t.name + "\" has an invalid shape " + shape_str(t.shape));
    }
    root[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = root.dump();
  // Pad with spaces so that the data section starts 8-byte aligned.
  text.append((kAlign - (8 + text.size()) % kAlign) % kAlign, ' ');
  std::string out(8, '\0');
  write_u64_le(text.size(), out.data());
  return out + text;
}

void write_safetensors(const std::string& path, std::vector<TensorBytes> tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::stable_sort(tensors.begin(), tensors.end(), [](const TensorBytes& a, const TensorBytes& b) {
    const size_t sa = dtype_size(a.dtype), sb = dtype_size(b.dtype);
    return sa != sb ? sa > sb : a.name < b.name;
  });
  const std::string header = build_header(tensors, metadata);
  for (const auto& t : tensors) {
    uint64_t nbytes = 0;
    byte_size(t.shape, dtype_size(t.dtype), &nbytes);
    if (nbytes > 0 && t.data == nullptr) {
      throw std::invalid_argument("safetensors: tensor \"" + t.name + "\" has no data");
    }
  }
  core::write_file_atomic(path, [&](std::ostream& out) {
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& t : tensors) {
      uint64_t nbytes = 0;
      byte_size(t.shape, dtype_size(t.dtype), &nbytes);
      out.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(nbytes));
    }
  });
}

}  // namespace comba::io

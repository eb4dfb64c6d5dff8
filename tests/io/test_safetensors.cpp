// safetensors against the format's specification, with no torch: the writer's bytes are
// compared with a file assembled by hand from the spec (length prefix, JSON header, space
// padding to 8 bytes, data order by dtype size, dtype names), the reader parses
// hand-built files, and every malformed case is rejected with its own message.
#include "comba/io/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "support/file_bytes.h"
#include "support/scratch_dir.h"

namespace comba::io {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

std::string u64le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

// A complete file: prefix + header (padded with spaces to 8) + data, built by hand.
std::string hand_file(const std::string& json, const std::string& data, bool pad = true) {
  std::string header = json;
  if (pad) header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  return u64le(header.size()) + header + data;
}

std::string f32_bytes(std::initializer_list<float> values) {
  std::string s;
  for (const float v : values) {
    char b[4];
    std::memcpy(b, &v, 4);  // little-endian host (x86-64, aarch64)
    s.append(b, 4);
  }
  return s;
}

std::string error_of(const std::string& bytes) {
  try {
    parse_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "case.safetensors");
  } catch (const FormatError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Safetensors, DtypeNamesAndSizesFollowTheSpec) {
  const std::pair<const char*, size_t> expected[] = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"F64", 8}, {"I64", 8}, {"U64", 8}};
  for (const auto& [name, size] : expected) {
    const Dtype d = dtype_from_name(name);
    EXPECT_STREQ(dtype_name(d), name);
    EXPECT_EQ(dtype_size(d), size) << name;
  }
  EXPECT_THROW(dtype_from_name("F32 "), FormatError);
  EXPECT_THROW(dtype_from_name("float32"), FormatError);
}

TEST(Safetensors, WriterBytesMatchAHandBuiltFile) {
  TempDir dir;
  // bf16 1, 2, -3 are 0x3F80, 0x4000, 0xC040; int64 7; f32 1, -2.
  const uint16_t bf16[3] = {0x3F80, 0x4000, 0xC040};
  const int64_t scalar = 7;
  const float f32[2] = {1.0f, -2.0f};
  write_safetensors(dir.file("w.safetensors"),
                    {{"a", Dtype::BF16, {3}, bf16}, {"b", Dtype::F32, {2}, f32}, {"c", Dtype::I64, {}, &scalar}});

  // Data order: 8-byte dtypes first, then 4, then 2, so every tensor starts aligned.
  const std::string json =
      R"({"__metadata__":{"format":"pt"},)"
      R"("c":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}})";
  const std::string data = std::string("\x07\0\0\0\0\0\0\0", 8) + f32_bytes({1.0f, -2.0f}) +
                           std::string("\x80\x3F\x00\x40\x40\xC0", 6);
  const std::string expected = hand_file(json, data);
  const std::string written = testing::read_bytes(dir.file("w.safetensors"));
  EXPECT_EQ((8 + json.size() + 7) / 8 * 8 + data.size(), expected.size());
  EXPECT_EQ(written, expected);
  // The header length is little-endian and the data section starts on an 8-byte boundary.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(written[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(written[8], '{');
}

TEST(Safetensors, ReadsAHandBuiltFile) {
  TempDir dir;
  // Unpadded header, data not in name order, metadata present.
  const std::string json =
      R"({"w":{"dtype":"F32","shape":[2,1],"data_offsets":[4,12]},)"
      R"("z":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"__metadata__":{"k":"v"}})";
  const std::string data = std::string("\x01\x02\x03\x04", 4) + f32_bytes({0.5f, 3.0f});
  testing::write_bytes(dir.file("r.safetensors"), hand_file(json, data, /*pad=*/false));

  const SafetensorsFile file(dir.file("r.safetensors"));
  ASSERT_EQ(file.tensors().size(), 2u);
  EXPECT_EQ(file.metadata().at("k"), "v");
  const TensorEntry& z = file.at("z");
  EXPECT_EQ(z.dtype, Dtype::U8);
  EXPECT_EQ(z.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file.bytes(z)), 4), "\x01\x02\x03\x04");
  const TensorEntry& w = file.at("w");
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 1}));
  float values[2];
  std::memcpy(values, file.bytes(w), 8);
  EXPECT_EQ(values[0], 0.5f);
  EXPECT_EQ(values[1], 3.0f);
  EXPECT_EQ(file.find("nope"), nullptr);
  EXPECT_THAT([&] { try { file.at("nope"); } catch (const FormatError& e) { return std::string(e.what()); } return std::string(); }(),
              HasSubstr("no tensor named \"nope\""));
}

TEST(Safetensors, EmptyTensorsAndEmptyFileAreValid) {
  const std::string ok = hand_file(R"({"e":{"dtype":"F16","shape":[0,3],"data_offsets":[0,0]}})", "");
  const Header h = parse_header(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "x");
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].nbytes(), 0u);
  const std::string none = hand_file("{}", "");
  EXPECT_TRUE(parse_header(reinterpret_cast<const uint8_t*>(none.data()), none.size(), "x").tensors.empty());
}

TEST(Safetensors, MalformedFilesAreRejectedWithTheirMessage) {
  const std::string one = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data8 = f32_bytes({1, 2});
  EXPECT_THAT(error_of(hand_file(one, data8)), HasSubstr("(no error)"));

  EXPECT_THAT(error_of(std::string("\x10\0\0", 3)), HasSubstr("truncated: 3 bytes, shorter than the 8-byte header length"));
  EXPECT_THAT(error_of(u64le(1000) + "{}"), HasSubstr("header length 1000 runs past the end of the file (10 bytes"));
  EXPECT_THAT(error_of(hand_file(R"({"t":{"dtype":"F32",)", "")), HasSubstr("bad JSON header"));
  EXPECT_THAT(error_of(hand_file("[1,2]", "")), HasSubstr("header expected a JSON object, got array"));
  EXPECT_THAT(error_of(hand_file(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", data8)),
              HasSubstr("tensor \"t\": unknown dtype \"F33\""));
  EXPECT_THAT(error_of(hand_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data8)),
              HasSubstr("tensor \"t\": data_offsets [8, 16] out of range: the data section has 8 bytes"));
  EXPECT_THAT(error_of(hand_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8)),
              HasSubstr("shape [3] of F32 needs 12 bytes, data_offsets [0, 8] hold 8"));
  EXPECT_THAT(error_of(hand_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                 data8)),
              HasSubstr("tensor \"b\": data_offsets [4, 8] overlap tensor \"a\" which ends at 8"));
  EXPECT_THAT(error_of(hand_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8)),
              HasSubstr("leave bytes [0, 4) unused"));
  EXPECT_THAT(error_of(hand_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data8)),
              HasSubstr("trailing bytes"));
  EXPECT_THAT(error_of(hand_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8)),
              HasSubstr("\"shape\" expected non-negative integers"));
  EXPECT_THAT(error_of(hand_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8)),
              HasSubstr("data_offsets [8, 0] end before begin"));
  EXPECT_THAT(error_of(hand_file(R"({"t":{"dtype":"F32","shape":[2]}})", data8)),
              HasSubstr("missing field \"data_offsets\""));
  EXPECT_THAT(error_of(hand_file(R"({"__metadata__":{"k":1}})", "")), HasSubstr("expected a string"));
}

TEST(Safetensors, EveryTruncationOfAValidFileIsAnErrorNotACrash) {
  TempDir dir;
  const float f32[3] = {1, 2, 3};
  const uint16_t f16[2] = {0x3C00, 0x4000};
  write_safetensors(dir.file("ok.safetensors"), {{"x", Dtype::F32, {3}, f32}, {"y", Dtype::F16, {2, 1}, f16}});
  const std::string whole = testing::read_bytes(dir.file("ok.safetensors"));
  EXPECT_THAT(error_of(whole), HasSubstr("(no error)"));
  for (size_t cut = 0; cut < whole.size(); ++cut) {
    const std::string msg = error_of(whole.substr(0, cut));
    EXPECT_THAT(msg, HasSubstr("case.safetensors: ")) << "cut at " << cut;
  }
  // Through the file API too: the path names the file.
  testing::write_bytes(dir.file("cut.safetensors"), whole.substr(0, whole.size() - 3));
  try {
    SafetensorsFile file(dir.file("cut.safetensors"));
    FAIL() << "a truncated file was accepted";
  } catch (const FormatError& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("cut.safetensors: "));
    EXPECT_THAT(std::string(e.what()), HasSubstr("out of range"));
  }
  EXPECT_THROW(SafetensorsFile(dir.file("missing.safetensors")), std::runtime_error);
}

}  // namespace
}  // namespace comba::io

// core's file helpers: atomic replacement (whole or not at all, no temporary file left
// after a failure, the system's reason reported), file types named in messages, memory
// maps that refuse a FIFO at once and report no stale errno.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "comba/core/atomic_file.h"
#include "comba/core/file_util.h"
#include "comba/core/mapped_file.h"
#include "core/fifo_guard.h"
#include "support/file_bytes.h"
#include "support/scratch_dir.h"

namespace comba::core {
namespace {

using comba::testing::call_without_hang;
using comba::testing::make_fifo;

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = comba::testing::fresh_dir(std::string("core_files_") +
                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override { remove_tree(dir_); }

  std::string file(const std::string& name) const { return join_path(dir_, name); }
  static std::string read(const std::string& path) { return comba::testing::read_bytes(path); }

  std::string dir_;
};

std::string pattern(size_t size, unsigned seed) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + seed) % 251);
  return s;
}

TEST_F(FilesTest, AtomicWriteReplacesTheTargetWhole) {
  const std::string p = file("config.json");
  comba::testing::write_bytes(p, std::string(10000, 'a'));
  write_file_atomic(p, "new");
  EXPECT_EQ(read(p), "new");  // nothing of the longer old file remains
  EXPECT_EQ(list_directory(dir_), std::vector<std::string>{"config.json"});
}

TEST_F(FilesTest, AtomicWriteCreatesMissingParents) {
  const std::string p = join_path(file("a/b"), "x.txt");
  write_file_atomic(p, "x");
  EXPECT_EQ(read(p), "x");
}

TEST_F(FilesTest, StreamingWriteTakesLargeBlocksAndSeeks) {
  const std::string p = file("big.bin");
  const std::string block = pattern(3 << 20, 7);  // larger than the writer's buffer
  write_file_atomic(p, [&](std::ostream& out) {
    out << "HEADER__";
    out.write(block.data(), static_cast<std::streamsize>(block.size()));
    for (int i = 0; i < 1000; ++i) out << static_cast<char>('0' + i % 10);
    out.seekp(6);
    out << "OK";
  });
  std::string expected = "HEADEROK" + block;
  for (int i = 0; i < 1000; ++i) expected += static_cast<char>('0' + i % 10);
  EXPECT_EQ(read(p), expected);
  EXPECT_EQ(list_directory(dir_).size(), 1u);
}

TEST_F(FilesTest, ThrowingWriterLeavesTheOldFileAndNoTemporary) {
  const std::string p = file("model.safetensors");
  comba::testing::write_bytes(p, "old contents");
  EXPECT_THROW(write_file_atomic(p,
                                 [&](std::ostream& out) {
                                   const std::string half = pattern(2 << 20, 1);
                                   out.write(half.data(), static_cast<std::streamsize>(half.size()));
                                   throw std::logic_error("writer gave up");
                                 }),
               std::logic_error);
  EXPECT_EQ(read(p), "old contents");
  EXPECT_EQ(list_directory(dir_), std::vector<std::string>{"model.safetensors"});
}

// A real write failure: the file size limit makes write() fail with EFBIG part way, as a
// full disk fails with ENOSPC.
TEST_F(FilesTest, FailedWriteNamesTheReasonAndKeepsTheOldFile) {
  const std::string p = file("state.bin");
  comba::testing::write_bytes(p, "old contents");
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto previous = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 64 << 10;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  try {
    write_file_atomic(p, pattern(1 << 20, 3));
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous);
  EXPECT_NE(message.find(p + ": write failed: File too large"), std::string::npos) << message;
  EXPECT_EQ(read(p), "old contents");
  EXPECT_EQ(list_directory(dir_), std::vector<std::string>{"state.bin"});
}

TEST_F(FilesTest, FailedRenameRemovesTheTemporary) {
  const std::string p = file("taken");
  make_directories(join_path(p, "inside"));  // a non-empty directory cannot be replaced
  try {
    write_file_atomic(p, "x");
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(p + ": rename of "), std::string::npos) << e.what();
  }
  EXPECT_EQ(list_directory(dir_), std::vector<std::string>{"taken"});
}

TEST_F(FilesTest, UncommittedWriterLeavesNothing) {
  const std::string p = file("never.txt");
  std::string tmp;
  {
    AtomicFileWriter writer(p);
    writer.stream() << "partial";
    tmp = writer.temporary_path();
    EXPECT_EQ(parent_directory(tmp), dir_);
    EXPECT_TRUE(path_exists(tmp));
  }
  EXPECT_FALSE(path_exists(tmp));
  EXPECT_FALSE(path_exists(p));
}

TEST_F(FilesTest, FileTypesAreNamed) {
  comba::testing::write_bytes(file("r"), "x");
  make_fifo(file("f"));
  EXPECT_EQ(describe_file_type(file("r")), "a regular file");
  EXPECT_EQ(describe_file_type(dir_), "a directory");
  EXPECT_EQ(describe_file_type(file("f")), "a FIFO (named pipe)");
  EXPECT_EQ(describe_file_type("/dev/null"), "a character device");
  EXPECT_EQ(describe_file_type(file("missing")), "missing");
  EXPECT_NO_THROW(require_regular_file(file("r"), "data.text_files"));
  try {
    require_regular_file(file("f"), "data.text_files");
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "data.text_files: " + file("f") + " is a FIFO (named pipe), expected a regular file");
  }
}

TEST_F(FilesTest, MappingAFifoFailsAtOnce) {
  make_fifo(file("pipe"));
  const auto r = call_without_hang([&] { MappedFile m(file("pipe")); }, file("pipe"));
  EXPECT_FALSE(r.hung) << "open() blocked on the FIFO";
  EXPECT_TRUE(r.threw);
  EXPECT_NE(r.message.find(file("pipe") + " is a FIFO (named pipe)"), std::string::npos) << r.message;
}

TEST_F(FilesTest, MappingADeviceNamesItWithoutStaleErrno) {
  errno = ENOENT;  // left over from an earlier call, as in a real run
  try {
    MappedFile m("/dev/null");
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("/dev/null is a character device, expected a regular file"), std::string::npos) << what;
    EXPECT_EQ(what.find("No such file"), std::string::npos) << what;
  }
}

TEST_F(FilesTest, CopyReplacesAtomicallyAndRefusesAFifo) {
  const std::string from = file("tok.model");
  const std::string to = file("out.model");
  comba::testing::write_bytes(from, pattern(3 << 20, 9));
  comba::testing::write_bytes(to, "old");
  copy_file(from, to);
  EXPECT_EQ(read(to), read(from));
  comba::testing::write_bytes(from, "");  // an empty file copies as empty
  copy_file(from, to);
  EXPECT_EQ(read(to), "");
  make_fifo(file("pipe"));
  const auto r = call_without_hang([&] { copy_file(file("pipe"), to); }, file("pipe"));
  EXPECT_FALSE(r.hung);
  EXPECT_NE(r.message.find("is a FIFO"), std::string::npos) << r.message;
  EXPECT_EQ(list_directory(dir_), (std::vector<std::string>{"out.model", "pipe", "tok.model"}));
}

}  // namespace
}  // namespace comba::core

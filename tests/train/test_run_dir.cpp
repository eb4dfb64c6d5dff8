// The run directory's guards without a model: the writability probe (a regular file in
// the way, a read-only folder), the one-writer lock (in this process and from another),
// and the move-aside of an earlier run's checkpoints and metrics.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "comba/core/file_util.h"
#include "comba/train/checkpoint/run_dir.h"
#include "support/expect_error.h"
#include "support/scratch_dir.h"

namespace comba::train {
namespace {

std::string fresh_dir(const std::string& name) { return comba::testing::fresh_dir("run_dir_" + name); }

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void touch(const std::string& path, const std::string& text = "x") { std::ofstream(path) << text; }

TEST(RunDir, WritableCheckCreatesTheFolderAndLeavesNoProbe) {
  const std::string root = fresh_dir("writable");
  const std::string dir = root + "/a/b";
  check_writable_dir("checkpoint.dir", dir);
  EXPECT_TRUE(core::is_directory(dir));
  EXPECT_TRUE(core::list_directory(dir).empty());
  core::remove_tree(root);
}

TEST(RunDir, RegularFileInTheWayIsNamedWithItsKey) {
  const std::string root = fresh_dir("file_in_way");
  const std::string file = root + "/file";
  touch(file);
  // The file itself as the folder, and a folder under it (which stops root too).
  const std::string as_dir = comba::testing::error_of([&] { check_writable_dir("checkpoint.dir", file); });
  EXPECT_TRUE(has(as_dir, "checkpoint.dir: cannot use \"" + file + "\" as an output directory")) << as_dir;
  EXPECT_TRUE(has(as_dir, "not a directory")) << as_dir;
  const std::string under = comba::testing::error_of([&] { check_writable_dir("logging.run_dir", file + "/sub"); });
  EXPECT_TRUE(has(under, "logging.run_dir: cannot use \"" + file + "/sub\"")) << under;
  core::remove_tree(root);
}

TEST(RunDir, ReadOnlyFolderIsNamedWithItsKey) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into a 0555 folder";
  const std::string root = fresh_dir("read_only");
  const std::string dir = root + "/ro";
  core::make_directories(dir);
  ASSERT_EQ(::chmod(dir.c_str(), 0555), 0);
  const std::string text = comba::testing::error_of([&] { check_writable_dir("checkpoint.export_dir", dir); });
  EXPECT_TRUE(has(text, "checkpoint.export_dir: cannot write in \"" + dir + "\": Permission denied")) << text;
  ::chmod(dir.c_str(), 0755);
  core::remove_tree(root);
}

TEST(RunDir, SecondLockOnTheSameDirIsRefusedWithThePid) {
  const std::string dir = fresh_dir("lock");
  {
    const RunDirLock first("logging.run_dir", dir);
    ASSERT_TRUE(first.held());
    const std::string text = comba::testing::error_of([&] { RunDirLock second("logging.run_dir", dir); });
    EXPECT_TRUE(has(text, "logging.run_dir \"" + dir + "\" is in use by another training run (pid " +
                              std::to_string(::getpid()) + ")"))
        << text;

    // Another process is refused the same way (flock is per open file, across processes).
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      try {
        RunDirLock other("logging.run_dir", dir);
        ::_exit(0);  // wrongly granted
      } catch (const std::exception& e) {
        ::_exit(has(e.what(), "(pid " + std::to_string(::getppid()) + ")") ? 7 : 1);
      }
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 7);
  }
  // Released with the object: the next run takes it.
  const RunDirLock again("logging.run_dir", dir);
  EXPECT_TRUE(again.held());
  core::remove_tree(dir);
}

TEST(RunDir, MoveAsideTakesCheckpointsAndRunFilesIntoPreviousN) {
  const std::string run = fresh_dir("move");
  const std::string ckpt = run + "/checkpoints";
  core::make_directories(ckpt);
  touch(ckpt + "/step_0000000004.ckpt");
  touch(ckpt + "/step_0000000008.ckpt");
  touch(ckpt + "/step_0000000009.ckpt.unreadable");
  touch(ckpt + "/notes.txt");  // not the run's: stays
  touch(run + "/metrics.jsonl", "{\"type\": \"train\", \"step\": 8}\n");
  touch(run + "/config.yaml");
  touch(run + "/train.log");  // the log of every run: stays
  touch(run + "/.lock");

  const std::string said = move_previous_run_aside(run, ckpt);
  EXPECT_TRUE(has(said, "3 checkpoint file(s) (newest step_0000000008.ckpt) to " + run +
                            "/previous-1/checkpoints")) << said;
  EXPECT_TRUE(has(said, "metrics.jsonl, config.yaml to " + run + "/previous-1")) << said;
  EXPECT_TRUE(core::is_regular_file(run + "/previous-1/checkpoints/step_0000000008.ckpt"));
  EXPECT_TRUE(core::is_regular_file(run + "/previous-1/checkpoints/step_0000000009.ckpt.unreadable"));
  EXPECT_TRUE(core::is_regular_file(run + "/previous-1/metrics.jsonl"));
  EXPECT_TRUE(core::is_regular_file(run + "/previous-1/config.yaml"));
  EXPECT_EQ(core::list_directory(ckpt), std::vector<std::string>{"notes.txt"});
  EXPECT_FALSE(core::path_exists(run + "/metrics.jsonl"));
  EXPECT_TRUE(core::path_exists(run + "/train.log"));
  EXPECT_TRUE(core::path_exists(run + "/.lock"));

  // Nothing of a run left: nothing moves.
  EXPECT_EQ(move_previous_run_aside(run, ckpt), "");
  // The next one takes the next number; metrics alone are enough to move.
  touch(run + "/metrics.jsonl");
  EXPECT_TRUE(has(move_previous_run_aside(run, ckpt), run + "/previous-2"));
  EXPECT_TRUE(core::is_regular_file(run + "/previous-2/metrics.jsonl"));
  core::remove_tree(run);
}

TEST(RunDir, CheckpointsOutsideTheRunDirMoveBesideThemselves) {
  const std::string root = fresh_dir("move_outside");
  const std::string run = root + "/run";
  const std::string ckpt = root + "/ckpts";
  core::make_directories(run);
  core::make_directories(ckpt);
  touch(ckpt + "/step_0000000002.ckpt");
  const std::string said = move_previous_run_aside(run, ckpt);
  EXPECT_TRUE(has(said, "to " + ckpt + "/previous-1")) << said;
  EXPECT_TRUE(core::is_regular_file(ckpt + "/previous-1/step_0000000002.ckpt"));
  EXPECT_FALSE(core::path_exists(run + "/previous-1"));  // nothing of the run's own moved
  // A trailing slash still counts as the run's own checkpoints/ folder.
  const std::string run2 = root + "/run2";
  core::make_directories(run2 + "/checkpoints");
  touch(run2 + "/checkpoints/step_0000000001.ckpt");
  move_previous_run_aside(run2 + "/", run2 + "//checkpoints/");
  EXPECT_TRUE(core::is_regular_file(run2 + "/previous-1/checkpoints/step_0000000001.ckpt"));
  core::remove_tree(root);
}

}  // namespace
}  // namespace comba::train

// The programs' shared command-line helpers (comba/core/cli.h): the validators' verdicts
// on good and bad values, parse()'s exit statuses, and what a user sees of an exception:
// the message, with c10's C++ backtrace only when debugging.
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "comba/core/cli.h"

namespace comba::cli {
namespace {

constexpr const char* kTrace = "Exception raised from";

// The validator's complaint about `text` ("" when it is accepted).
std::string verdict(const CLI::Validator& validator, std::string text) { return validator(text); }

TEST(CliValidators, IntegerAtLeast) {
  const auto positive = integer_at_least(1);
  EXPECT_EQ(verdict(positive, "1"), "");
  EXPECT_EQ(verdict(positive, "9223372036854775807"), "");
  EXPECT_EQ(verdict(positive, "0"), "expected an integer >= 1, got \"0\"");
  EXPECT_EQ(verdict(positive, "3x"), "expected an integer >= 1, got \"3x\"");
  EXPECT_EQ(verdict(positive, "abc"), "expected an integer >= 1, got \"abc\"");
  EXPECT_EQ(verdict(positive, "2.5"), "expected an integer >= 1, got \"2.5\"");
  EXPECT_EQ(verdict(positive, ""), "expected an integer >= 1, got \"\"");
  EXPECT_EQ(verdict(positive, " 4"), "expected an integer >= 1, got \" 4\"");
  EXPECT_EQ(verdict(positive, "9223372036854775808"), "expected an integer >= 1, got \"9223372036854775808\"");
  const auto bounded = integer_at_least(-1, 10);
  EXPECT_EQ(verdict(bounded, "-1"), "");
  EXPECT_EQ(verdict(bounded, "10"), "");
  EXPECT_EQ(verdict(bounded, "11"), "expected an integer in [-1, 10], got \"11\"");
}

TEST(CliValidators, NumberInRefusesNaNAndInfinityWhateverTheRange) {
  const auto temperature = number_in(closed(0), unbounded());
  EXPECT_EQ(verdict(temperature, "0"), "");
  EXPECT_EQ(verdict(temperature, "0.7"), "");
  EXPECT_EQ(verdict(temperature, "1e3"), "");
  for (const char* bad : {"-1", "-0.001", "nan", "NaN", "-nan", "inf", "1e999", "0.5x", "abc", ""}) {
    EXPECT_EQ(verdict(temperature, bad), std::string("expected a finite number >= 0, got \"") + bad + "\"") << bad;
  }
  const auto top_p = number_in(open(0), closed(1));
  EXPECT_EQ(verdict(top_p, "1"), "");
  EXPECT_EQ(verdict(top_p, "1e-9"), "");
  EXPECT_EQ(verdict(top_p, "0"), "expected a finite number in (0, 1], got \"0\"");
  EXPECT_EQ(verdict(top_p, "1.0001"), "expected a finite number in (0, 1], got \"1.0001\"");
  EXPECT_EQ(verdict(top_p, "nan"), "expected a finite number in (0, 1], got \"nan\"");
  EXPECT_EQ(verdict(number_in(open(0), unbounded()), "0"), "expected a finite number > 0, got \"0\"");
  EXPECT_EQ(verdict(finite_number(), "-3.5"), "");
  EXPECT_EQ(verdict(finite_number(), "inf"), "expected a finite number, got \"inf\"");
}

TEST(CliValidators, OneOfAndDevice) {
  const auto dtype = one_of({"float32", "bfloat16"});
  EXPECT_EQ(verdict(dtype, "bfloat16"), "");
  EXPECT_EQ(verdict(dtype, "int8"), "expected one of float32, bfloat16; got \"int8\"");
  EXPECT_EQ(verdict(device_name(), "cpu"), "");
  EXPECT_EQ(verdict(device_name(), "cuda:1"), "");
  EXPECT_EQ(verdict(device_name(), "gpu"), "expected a device such as cpu, cuda or cuda:1, got \"gpu\"");
}

// parse() on a command line; argv[0] is the program.
std::optional<int> parse_line(CLI::App& app, std::vector<const char*> args) {
  args.insert(args.begin(), "prog");
  return parse(app, static_cast<int>(args.size()), args.data());
}

TEST(CliParse, StatusesAndValues) {
  int64_t count = 2;
  double temperature = 0;
  std::vector<std::string> sets;
  bool resume = false, no_resume = false;
  const auto make = [&](CLI::App& app) {
    configure(app);
    app.add_option("--count", count)->check(integer_at_least(1));
    app.add_option("--temperature", temperature)->check(number_in(closed(0), unbounded()));
    app.add_option("--set", sets)->allow_extra_args(false);
    app.add_flag("--no-resume", no_resume)->excludes(app.add_flag("--resume", resume));
  };
  {
    CLI::App app{"", "prog"};
    make(app);
    EXPECT_EQ(parse_line(app, {"--count", "3", "--temperature", "0.5", "--set", "a=1", "--set=b=2"}), std::nullopt);
    EXPECT_EQ(count, 3);
    EXPECT_EQ(temperature, 0.5);
    EXPECT_EQ(sets, (std::vector<std::string>{"a=1", "b=2"}));
  }
  const std::vector<std::vector<const char*>> bad = {
      {"--count", "3x"}, {"--count", "abc"}, {"--cont", "3"},          {"--temperature", "nan"},
      {"--temperature", "-1"}, {"--resume", "--no-resume"}, {"stray"}, {"--count"}};
  for (const auto& line : bad) {
    CLI::App app{"", "prog"};
    make(app);
    EXPECT_EQ(parse_line(app, line), kUsageError) << line[0];
  }
  CLI::App app{"", "prog"};
  make(app);
  testing::internal::CaptureStdout();
  EXPECT_EQ(parse_line(app, {"--help"}), 0);
  EXPECT_NE(testing::internal::GetCapturedStdout().find("--temperature"), std::string::npos);
}

TEST(CliErrors, C10ErrorShowsItsBacktraceOnlyWhenDebugging) {
  try {
    TORCH_CHECK(false, "f: argument `x` expected 3, got 4");
  } catch (const std::exception& e) {
    // The trace is there to be hidden (c10 appends it to what()).
    ASSERT_NE(std::string(e.what()).find(kTrace), std::string::npos) << e.what();
    EXPECT_EQ(error_text(e, /*backtrace=*/false), "f: argument `x` expected 3, got 4");
    EXPECT_NE(error_text(e, /*backtrace=*/true).find(kTrace), std::string::npos);
    testing::internal::CaptureStderr();
    EXPECT_EQ(report_error("prog", e, /*debug=*/false), 1);
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "prog: f: argument `x` expected 3, got 4\n");
  }
}

TEST(CliErrors, OtherExceptions) {
  const std::runtime_error plain("file.bin: cannot open");
  EXPECT_EQ(error_text(plain, false), "file.bin: cannot open");
  EXPECT_EQ(error_text(plain, true), "file.bin: cannot open");
  // A c10 message copied into another exception keeps its trace in the text: cut there.
  const std::runtime_error wrapped("ckpt: cannot restore: bad\nException raised from f at x.cpp:1\nframe #0: ...");
  EXPECT_EQ(error_text(wrapped, false), "ckpt: cannot restore: bad");
  EXPECT_EQ(error_text(wrapped, true), wrapped.what());
}

TEST(CliErrors, DebugFromEnvironment) {
  const auto with = [](const char* value) {
    if (value) setenv("COMBA_DEBUG", value, 1);
    else unsetenv("COMBA_DEBUG");
    return debug_from_env();
  };
  EXPECT_FALSE(with(nullptr));
  EXPECT_FALSE(with(""));
  EXPECT_FALSE(with("0"));
  EXPECT_TRUE(with("1"));
  EXPECT_TRUE(with("yes"));
  unsetenv("COMBA_DEBUG");
}

}  // namespace
}  // namespace comba::cli

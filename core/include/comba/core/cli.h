// Command lines of the Comba programs (comba-train, comba-export, comba-tokenize, generate,
// gradcheck, the benchmarks), written once:
//   - parse(): CLI11, strict. An unknown or misspelled flag, a value that is not a whole
//     number or a finite one, or one out of range is an error naming the flag (exit 2);
//     --help prints the options (exit 0).
//   - validators for the ranges the programs share (integer >= n, finite number in a range).
//   - error_text() / report_error(): what a user sees of the exception that ends a program:
//     its message alone; with the C++ backtrace that c10 attaches to its errors only when
//     debugging (--debug, COMBA_DEBUG=1, or comba-train's logging.level: debug).
// Header-only and torch-free, so that comba-tokenize (no LibTorch) uses it too; the
// c10 parts (c10::Error's message, device names) compile in wherever c10's headers are on
// the include path.
#pragma once
#include <CLI/CLI.hpp>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#if __has_include(<c10/util/Exception.h>)
#include <c10/core/Device.h>
#include <c10/util/Exception.h>
#define COMBA_CLI_HAS_C10 1
#endif

namespace comba::cli {

// Exit status of a bad command line (every program).
constexpr int kUsageError = 2;

// Help text: a default reads "(default 2)" after the type and range, not "=2".
class Formatter : public CLI::Formatter {
 public:
  std::string make_option_opts(const CLI::Option* opt) const override {
    std::string text = CLI::Formatter::make_option_opts(opt);
    const std::string value = opt->get_default_str();
    const auto at = value.empty() ? std::string::npos : text.find("=" + value);
    if (at != std::string::npos) {
      // An empty list has nothing to say.
      text.replace(at, value.size() + 1, value == "[]" ? "" : " (default " + value + ")");
    }
    return text;
  }
};

// The shared conventions: defaults shown in --help, a wider option column.
inline void configure(CLI::App& app) {
  auto formatter = std::make_shared<Formatter>();
  formatter->column_width(36);
  app.formatter(formatter);
  app.option_defaults()->always_capture_default();
}

// Says what is wrong with the command line; returns kUsageError (for checks that CLI11
// cannot express, made after parse()).
inline int usage_error(const CLI::App& app, const std::string& message) {
  std::cerr << app.get_name() << ": " << message << "\nRun with --help for the options.\n";
  return kUsageError;
}

// Parses argv into `app`'s options. std::nullopt: go on; otherwise the status main returns
// (0 after --help, kUsageError after a bad command line, whose message names the flag).
inline std::optional<int> parse(CLI::App& app, int argc, const char* const* argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help: the options on stdout
    return usage_error(app, e.what());
  }
}

// COMBA_DEBUG set to anything but "" or "0".
inline bool debug_from_env() {
  const char* value = std::getenv("COMBA_DEBUG");
  return value != nullptr && *value != '\0' && std::string(value) != "0";
}

// --debug: a failure prints the C++ backtrace too. Starts from COMBA_DEBUG.
inline CLI::Option* add_debug_flag(CLI::App& app, bool& debug) {
  debug = debug_from_env();
  return app.add_flag("--debug", debug,
                      "on failure also print the C++ backtrace (or set COMBA_DEBUG=1)");
}

// ---- Validators: each checks the text of one value and says what it expected ----------

namespace detail {

// The whole text as a base-10 integer (no sign-less garbage: "3x", "", " 3" fail).
inline std::optional<int64_t> to_integer(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text.front()))) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (errno == ERANGE || end != text.c_str() + text.size()) return std::nullopt;
  return static_cast<int64_t>(value);
}

// The whole text as a finite number ("nan", "inf", "1e999", "0.5x" fail).
inline std::optional<double> to_finite(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text.front()))) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (errno == ERANGE || end != text.c_str() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

inline std::string number_text(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

}  // namespace detail

// An integer >= lo (and <= hi).
inline CLI::Validator integer_at_least(int64_t lo, int64_t hi = std::numeric_limits<int64_t>::max()) {
  const std::string range = hi == std::numeric_limits<int64_t>::max()
                                ? ">= " + std::to_string(lo)
                                : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        const auto value = detail::to_integer(text);
        if (value && *value >= lo && *value <= hi) return {};
        return "expected an integer " + range + ", got \"" + text + "\"";
      },
      range, "INTEGER");
}

// One end of a range of numbers: its value and whether the value itself is allowed.
struct Bound {
  double value;
  bool inclusive;
};
inline Bound closed(double value) { return {value, true}; }
inline Bound open(double value) { return {value, false}; }
inline Bound unbounded() { return {std::numeric_limits<double>::infinity(), false}; }

// A finite number between lo and hi, e.g. number_in(open(0), closed(1)) for (0, 1].
// NaN and infinities are refused whatever the range.
inline CLI::Validator number_in(Bound lo, Bound hi) {
  std::string range;
  if (std::isinf(hi.value)) {
    range = (lo.inclusive ? ">= " : "> ") + detail::number_text(lo.value);
  } else {
    range = std::string("in ") + (lo.inclusive ? "[" : "(") + detail::number_text(lo.value) + ", " +
            detail::number_text(hi.value) + (hi.inclusive ? "]" : ")");
  }
  const std::string expected = "a finite number " + range;
  return CLI::Validator(
      [lo, hi, expected](std::string& text) -> std::string {
        const auto value = detail::to_finite(text);
        const bool above = value && (lo.inclusive ? *value >= lo.value : *value > lo.value);
        const bool below = value && (hi.inclusive ? *value <= hi.value : *value < hi.value);
        if (above && below) return {};
        return "expected " + expected + ", got \"" + text + "\"";
      },
      range, "NUMBER");
}

// Any finite number.
inline CLI::Validator finite_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (detail::to_finite(text)) return {};
        return "expected a finite number, got \"" + text + "\"";
      },
      "finite", "NUMBER");
}

// One of the given words.
inline CLI::Validator one_of(std::vector<std::string> words) {
  std::string list;
  for (const auto& word : words) list += (list.empty() ? "" : ", ") + word;
  return CLI::Validator(
      [words, list](std::string& text) -> std::string {
        for (const auto& word : words) {
          if (text == word) return {};
        }
        return "expected one of " + list + "; got \"" + text + "\"";
      },
      "{" + list + "}", "WORD");
}

#ifdef COMBA_CLI_HAS_C10
// A device LibTorch understands: cpu, cuda, cuda:1, ...
inline CLI::Validator device_name() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          (void)c10::Device(text);
          return {};
        } catch (const std::exception&) {
          return "expected a device such as cpu, cuda or cuda:1, got \"" + text + "\"";
        }
      },
      "", "DEVICE");
}
#endif

// ---- Reporting the exception that ends a program ----------------------------------------

// The text a user sees for `e`: the message, and the C++ backtrace only when `backtrace`.
inline std::string error_text(const std::exception& e, bool backtrace) {
#ifdef COMBA_CLI_HAS_C10
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return backtrace ? error->what() : error->what_without_backtrace();
  }
#endif
  std::string text = e.what();
  // A c10 message copied into another exception's text brings its backtrace along.
  if (!backtrace) {
    const auto trace = text.find("\nException raised from ");
    if (trace != std::string::npos) text.resize(trace);
  }
  return text;
}

// Prints "<program>: <message>" on stderr and returns `status` (for `return report_error(...)`).
inline int report_error(const std::string& program, const std::exception& e, bool debug, int status = 1) {
  std::cerr << program << ": " << error_text(e, debug) << "\n";
  return status;
}

}  // namespace comba::cli

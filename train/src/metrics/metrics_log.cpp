// JSONL metrics (see metrics_log.h).
#include "comba/train/metrics/metrics_log.h"

#include <charconv>
#include <cstdlib>
#include <cmath>
#include <sstream>

#include "comba/train/checkpoint/checkpoint_file.h"
#include "comba/core/file_util.h"

namespace comba::train {
namespace {

std::string escape_json(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace

void JsonLine::key(const std::string& k) {
  if (!body_.empty()) body_ += ", ";
  body_ += "\"" + escape_json(k) + "\": ";
}

JsonLine& JsonLine::add(const std::string& k, double value) {
  key(k);
  if (!std::isfinite(value)) {
    body_ += std::isnan(value) ? "NaN" : (value > 0 ? "Infinity" : "-Infinity");
    return *this;
  }
  char buffer[64];
  const auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  body_.append(buffer, ptr);
  return *this;
}

JsonLine& JsonLine::add(const std::string& k, int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

JsonLine& JsonLine::add(const std::string& k, const std::string& value) {
  key(k);
  body_ += "\"" + escape_json(value) + "\"";
  return *this;
}

JsonLine& JsonLine::add_bool(const std::string& k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  return *this;
}

int64_t step_of_json_line(const std::string& line) {
  const std::string needle = "\"step\": ";
  const auto at = line.find(needle);
  if (at == std::string::npos) return -1;
  int64_t step = -1;
  const char* begin = line.data() + at + needle.size();
  std::from_chars(begin, line.data() + line.size(), step);
  return step;
}

double number_of_json_line(const std::string& line, const std::string& key) {
  const std::string needle = "\"" + key + "\": ";
  const auto at = line.find(needle);
  if (at == std::string::npos) return std::nan("");
  return std::strtod(line.c_str() + at + needle.size(), nullptr);
}

std::string string_of_json_line(const std::string& line, const std::string& key) {
  const std::string needle = "\"" + key + "\": \"";
  const auto at = line.find(needle);
  if (at == std::string::npos) return "";
  const auto begin = at + needle.size();
  return line.substr(begin, line.find('"', begin) - begin);
}

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through_step) {
  if (!core::parent_directory(path).empty()) core::make_directories(core::parent_directory(path));
  if (keep_through_step >= 0 && core::path_exists(path)) {
    std::ifstream in(path);
    std::ostringstream kept;
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && step_of_json_line(line) <= keep_through_step) kept << line << '\n';
    }
    in.close();
    write_file_atomic(path, kept.str());
  }
  out_.open(path, std::ios::app);
}

void MetricsLog::write(const JsonLine& line) {
  if (!out_.is_open()) return;
  out_ << line.str() << '\n';
  out_.flush();
}

}  // namespace comba::train

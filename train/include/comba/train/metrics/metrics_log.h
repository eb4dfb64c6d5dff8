// Metrics as JSON lines: one object per log step ("type": "train") and per evaluation
// ("type": "eval"), appended and flushed line by line so that a killed run keeps every
// line it wrote. A resumed run first drops the lines written after its checkpoint, so the
// file tells one uninterrupted story.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace comba::train {

// A flat JSON object built field by field (numbers, strings, booleans).
class JsonLine {
 public:
  JsonLine& add(const std::string& key, double value);
  JsonLine& add(const std::string& key, int64_t value);
  JsonLine& add(const std::string& key, const std::string& value);
  JsonLine& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  JsonLine& add_bool(const std::string& key, bool value);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
};

class MetricsLog {
 public:
  MetricsLog() = default;
  // Opens `path` for appending; with keep_through_step >= 0, lines of later steps are
  // removed first (a resumed run rewinding to its checkpoint).
  explicit MetricsLog(const std::string& path, int64_t keep_through_step = -1);
  void write(const JsonLine& line);
  bool is_open() const { return out_.is_open(); }

 private:
  std::ofstream out_;
};

// The "step" field of a JSON line written by JsonLine, or -1.
int64_t step_of_json_line(const std::string& line);
// A numeric field of such a line, or NaN when absent.
double number_of_json_line(const std::string& line, const std::string& key);
// A string field of such a line, or "" when absent.
std::string string_of_json_line(const std::string& line, const std::string& key);

}  // namespace comba::train

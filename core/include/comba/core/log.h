// Logging API with no torch or spdlog in sight: callers format their own message
// (std::ostringstream, c10::str) and hand over a string. Backed by spdlog in log.cpp.
#pragma once
#include <string>

namespace comba::log {

enum class Level { debug, info, warn, error };

void set_level(Level level);
// Also write every message to `path` (appending). Safe to call once per run.
void add_file_sink(const std::string& path);
void write(Level level, const std::string& message);

inline void debug(const std::string& m) { write(Level::debug, m); }
inline void info(const std::string& m) { write(Level::info, m); }
inline void warn(const std::string& m) { write(Level::warn, m); }
inline void error(const std::string& m) { write(Level::error, m); }

}  // namespace comba::log

// When and where checkpoints are written and whether a run resumes from them.
#pragma once
#include <cstdint>
#include <string>

namespace comba::train {

struct CheckpointOptions {
  int64_t interval = 0;   // steps between checkpoints; 0: only at the end and on a stop
  int64_t keep_last = 3;  // older checkpoints are deleted
  std::string dir;        // empty: <logging.run_dir>/checkpoints
  bool auto_resume = true;  // continue from the newest valid checkpoint in dir
  std::string export_dir;   // non-empty: write a Hugging Face model folder there at the end
};

}  // namespace comba::train

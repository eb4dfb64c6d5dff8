// Milliseconds of GPU work between two CUDA events on the current stream (the events are
// created once and destroyed with the timer). Shared by the benchmark programs.
#pragma once
#include <cuda_runtime.h>

#include <functional>

namespace comba::bench {

class EventTimer {
 public:
  EventTimer() {
    cudaEventCreate(&start_);
    cudaEventCreate(&stop_);
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  // Time of everything fn() enqueues (its host time included when the GPU waits on it).
  float time_ms(const std::function<void()>& fn) {
    cudaEventRecord(start_);
    fn();
    cudaEventRecord(stop_);
    cudaEventSynchronize(stop_);
    float ms = 0;
    cudaEventElapsedTime(&ms, start_, stop_);
    return ms;
  }

 private:
  cudaEvent_t start_{}, stop_{};
};

}  // namespace comba::bench

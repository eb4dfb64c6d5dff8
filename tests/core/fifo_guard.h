// Calls that must refuse a FIFO at once, run so that a regression fails instead of hanging
// the suite: the call runs on its own thread, and one still blocked after a few seconds
// (open() waiting for a writer) is released by opening the FIFO's write end.
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

namespace comba::testing {

struct GuardedCall {
  bool hung = false;    // the call blocked until the write end was opened
  bool threw = false;
  std::string message;  // what() of the exception, when one was thrown
};

inline GuardedCall call_without_hang(const std::function<void()>& call, const std::string& fifo) {
  std::promise<GuardedCall> done;
  std::future<GuardedCall> result = done.get_future();
  std::thread worker([&] {
    GuardedCall r;
    try {
      call();
    } catch (const std::exception& e) {
      r.threw = true;
      r.message = e.what();
    }
    done.set_value(r);
  });
  bool hung = false;
  if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    hung = true;
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // releases open()
    result.wait();
    if (fd >= 0) ::close(fd);
  }
  worker.join();
  GuardedCall r = result.get();
  r.hung = hung;
  return r;
}

inline void make_fifo(const std::string& path) {
  if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("mkfifo " + path + " failed");
}

}  // namespace comba::testing

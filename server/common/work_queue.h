// A fixed set of threads running posted tasks in order of posting, for work
// that must not run on gRPC's or the log writer's threads (blocking reads).

#ifndef FANOUT_SERVER_COMMON_WORK_QUEUE_H_
#define FANOUT_SERVER_COMMON_WORK_QUEUE_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fanout {

class WorkQueue {
 public:
  explicit WorkQueue(int threads);
  // Runs the tasks already posted, then joins the threads.
  ~WorkQueue();

  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `task` to run on one of the threads. Thread-safe.
  void Post(std::function<void()> task);

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;  // Guarded by mu_.
  bool stopping_ = false;                    // Guarded by mu_.
  std::vector<std::thread> threads_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_COMMON_WORK_QUEUE_H_

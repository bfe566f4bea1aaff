// A Dispatcher backed by a libevent event_base running on its own thread.
//
// Owned by the server (or a test). Start() spawns the thread; Shutdown() runs
// every closure already posted, stops the loop and joins the thread. The
// event_base is exposed for adapters (hiredis, curl) that must register their
// sockets on the loop; use it on the dispatcher thread only.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/event/dispatcher.h"

struct event_base;
struct event;

namespace switchboard::event {

class DispatcherImpl final : public Dispatcher {
 public:
  DispatcherImpl(std::string name, common::Clock& clock);
  ~DispatcherImpl() override;  // Calls Shutdown().

  DispatcherImpl(const DispatcherImpl&) = delete;
  DispatcherImpl& operator=(const DispatcherImpl&) = delete;

  // Starts the loop thread. Call once.
  void Start();

  // Runs the closures already posted, then stops the loop and joins the
  // thread. Idempotent. Must not be called from the dispatcher thread.
  void Shutdown();

  const std::string& name() const override { return name_; }
  void Post(absl::AnyInvocable<void()> fn) override;
  std::unique_ptr<Timer> CreateTimer(absl::AnyInvocable<void()> callback) override;
  bool IsDispatcherThread() const override;
  common::Clock& clock() override { return clock_; }

  // The libevent base, for socket adapters. Dispatcher thread only.
  event_base* base() { return base_; }

 private:
  class TimerImpl;
  using TimerQueue = std::multimap<absl::Time, TimerImpl*>;

  static void OnPostedEvent(int fd, short what, void* arg) noexcept;
  static void OnTimerEvent(int fd, short what, void* arg) noexcept;

  void RunPosted();
  void RunDueTimers();
  void RearmTimerEvent();

  const std::string name_;
  common::Clock& clock_;
  event_base* base_ = nullptr;
  ::event* posted_event_ = nullptr;
  ::event* timer_event_ = nullptr;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_;  // Written by the loop thread.
  // Re-checks timers when a simulated clock jumps.
  std::function<void()> clock_jump_observer_;

  absl::Mutex mu_;
  std::vector<absl::AnyInvocable<void()>> posted_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool started_ = false;
  bool stopped_ = false;

  // Dispatcher thread only.
  TimerQueue timers_;
};

}  // namespace switchboard::event

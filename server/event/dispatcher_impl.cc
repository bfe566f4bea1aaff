#include "server/event/dispatcher_impl.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>

#include <utility>

namespace switchboard::event {
namespace {

void EnableLibeventThreads() {
  static const bool enabled = [] { return evthread_use_pthreads() == 0; }();
  (void)enabled;
}

timeval ClampedTimeval(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  return absl::ToTimeval(d);
}

}  // namespace

class DispatcherImpl::TimerImpl final : public Timer {
 public:
  TimerImpl(DispatcherImpl& dispatcher, absl::AnyInvocable<void()> callback)
      : dispatcher_(dispatcher), callback_(std::move(callback)) {}
  ~TimerImpl() override { Disable(); }

  void EnableAt(absl::Time deadline) override {
    Disable();
    position_ = dispatcher_.timers_.emplace(deadline, this);
    enabled_ = true;
    dispatcher_.RearmTimerEvent();
  }

  void Enable(absl::Duration delay) override { EnableAt(dispatcher_.clock().Now() + delay); }

  void Disable() override {
    if (!enabled_) return;
    dispatcher_.timers_.erase(position_);
    enabled_ = false;
  }

  bool Enabled() const override { return enabled_; }

  // Called by the dispatcher after removing this timer from the queue.
  void Fire() {
    enabled_ = false;
    callback_();
  }

 private:
  DispatcherImpl& dispatcher_;
  absl::AnyInvocable<void()> callback_;
  bool enabled_ = false;
  TimerQueue::iterator position_;
};

DispatcherImpl::DispatcherImpl(std::string name, common::Clock& clock)
    : name_(std::move(name)), clock_(clock) {
  EnableLibeventThreads();
  base_ = event_base_new();
  posted_event_ = event_new(base_, -1, 0, &DispatcherImpl::OnPostedEvent, this);
  timer_event_ = event_new(base_, -1, 0, &DispatcherImpl::OnTimerEvent, this);
  clock_jump_observer_ = [this] { Post([this] { RunDueTimers(); }); };
  clock_.AddJumpObserver(&clock_jump_observer_);
}

DispatcherImpl::~DispatcherImpl() {
  Shutdown();
  clock_.RemoveJumpObserver(&clock_jump_observer_);
  event_free(timer_event_);
  event_free(posted_event_);
  event_base_free(base_);
}

void DispatcherImpl::Start() {
  started_ = true;
  thread_ = std::thread([this] {
    thread_id_.store(std::this_thread::get_id());
    pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
    event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
  });
}

void DispatcherImpl::Shutdown() {
  if (stopped_) return;
  stopped_ = true;
  if (started_) {
    // Runs after everything posted so far.
    Post([this] { event_base_loopbreak(base_); });
    thread_.join();
  }
  absl::MutexLock lock(&mu_);
  accepting_ = false;
  posted_.clear();
}

void DispatcherImpl::Post(absl::AnyInvocable<void()> fn) {
  absl::MutexLock lock(&mu_);
  if (!accepting_) return;
  const bool was_empty = posted_.empty();
  posted_.push_back(std::move(fn));
  if (was_empty) event_active(posted_event_, 0, 0);
}

std::unique_ptr<Timer> DispatcherImpl::CreateTimer(absl::AnyInvocable<void()> callback) {
  return std::make_unique<TimerImpl>(*this, std::move(callback));
}

bool DispatcherImpl::IsDispatcherThread() const { return std::this_thread::get_id() == thread_id_; }

void DispatcherImpl::OnPostedEvent(int, short, void* arg) noexcept {
  static_cast<DispatcherImpl*>(arg)->RunPosted();
}

void DispatcherImpl::OnTimerEvent(int, short, void* arg) noexcept {
  static_cast<DispatcherImpl*>(arg)->RunDueTimers();
}

void DispatcherImpl::RunPosted() {
  std::vector<absl::AnyInvocable<void()>> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void DispatcherImpl::RunDueTimers() {
  const absl::Time now = clock_.Now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    TimerImpl* timer = timers_.begin()->second;
    timers_.erase(timers_.begin());
    timer->Fire();  // May create, enable or destroy timers.
  }
  RearmTimerEvent();
}

void DispatcherImpl::RearmTimerEvent() {
  if (timers_.empty()) {
    event_del(timer_event_);
    return;
  }
  const timeval delay = ClampedTimeval(timers_.begin()->first - clock_.Now());
  event_add(timer_event_, &delay);
}

}  // namespace switchboard::event

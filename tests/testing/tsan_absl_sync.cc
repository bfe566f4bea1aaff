// ThreadSanitizer builds only: tells TSan about Abseil's synchronization.
//
// Debian's Abseil is not built with -fsanitize=thread, so TSan cannot see the
// happens-before edges that absl::Mutex, absl::CondVar and absl::Notification
// create, and reports every handoff through them as a data race. This file
// interposes those entry points (the test executable's definitions win over
// the shared library's), calls the real ones found with dlsym(RTLD_NEXT), and
// adds the edges with __tsan_acquire / __tsan_release: release before a lock
// is given up, acquire after it is taken. Linked into every test binary of a
// TSan build through switchboard::testing (tests/testing/CMakeLists.txt).
//
// Not covered: Notification::HasBeenNotified() (inline) as a synchronization
// point; wait with WaitForNotification*() instead.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

#define SB_STRINGIFY_INNER(x) #x
#define SB_STRINGIFY(x) SB_STRINGIFY_INNER(x)

// The real definition of the Abseil function whose mangled name is
// `prefix` + "4absl" + <inline namespace> + `suffix`, e.g. "_ZN" and
// "5Mutex4LockEv" for absl::Mutex::Lock().
void* Real(const char* prefix, const char* suffix) {
  const char* inline_namespace = SB_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = std::string(prefix) + "4absl" +
                           std::to_string(std::strlen(inline_namespace)) + inline_namespace +
                           suffix;
  void* real = dlsym(RTLD_NEXT, name.c_str());
  if (real == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: no definition of %s\n", name.c_str());
    std::abort();
  }
  return real;
}

// Declares `real`, the interposed function's real definition, of type `type`.
#define SB_REAL(type, prefix, suffix) \
  static const auto real = reinterpret_cast<type>(Real(prefix, suffix))

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  SB_REAL(void (*)(Mutex*), "_ZN", "5Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderLock() {
  SB_REAL(void (*)(Mutex*), "_ZN", "5Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}

bool Mutex::TryLock() {
  SB_REAL(bool (*)(Mutex*), "_ZN", "5Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  SB_REAL(bool (*)(Mutex*), "_ZN", "5Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Unlock() {
  SB_REAL(void (*)(Mutex*), "_ZN", "5Mutex6UnlockEv");
  __tsan_release(this);
  real(this);
}

void Mutex::ReaderUnlock() {
  SB_REAL(void (*)(Mutex*), "_ZN", "5Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

// The LockWhen family returns holding the lock, whatever the outcome.
void Mutex::LockWhen(const Condition& cond) {
  SB_REAL(void (*)(Mutex*, const Condition&), "_ZN", "5Mutex8LockWhenERKNS0_9ConditionE");
  real(this, cond);
  __tsan_acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  SB_REAL(void (*)(Mutex*, const Condition&), "_ZN", "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  real(this, cond);
  __tsan_acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  SB_REAL(bool (*)(Mutex*, const Condition&, absl::Duration), "_ZN",
          "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const bool met = real(this, cond, timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  SB_REAL(bool (*)(Mutex*, const Condition&, absl::Duration), "_ZN",
          "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  const bool met = real(this, cond, timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  SB_REAL(bool (*)(Mutex*, const Condition&, absl::Time), "_ZN",
          "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const bool met = real(this, cond, deadline);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  SB_REAL(bool (*)(Mutex*, const Condition&, absl::Time), "_ZN",
          "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  const bool met = real(this, cond, deadline);
  __tsan_acquire(this);
  return met;
}

// Await gives the lock up while it waits and takes it back before returning.
void Mutex::Await(const Condition& cond) {
  SB_REAL(void (*)(Mutex*, const Condition&), "_ZN", "5Mutex5AwaitERKNS0_9ConditionE");
  __tsan_release(this);
  real(this, cond);
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  SB_REAL(bool (*)(Mutex*, const Condition&, absl::Duration), "_ZN",
          "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  __tsan_release(this);
  const bool met = real(this, cond, timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  SB_REAL(bool (*)(Mutex*, const Condition&, absl::Time), "_ZN",
          "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  __tsan_release(this);
  const bool met = real(this, cond, deadline);
  __tsan_acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  SB_REAL(void (*)(CondVar*, Mutex*), "_ZN", "7CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  SB_REAL(bool (*)(CondVar*, Mutex*, absl::Duration), "_ZN",
          "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, timeout);
  __tsan_acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  SB_REAL(bool (*)(CondVar*, Mutex*, absl::Time), "_ZN",
          "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, deadline);
  __tsan_acquire(mu);
  return timed_out;
}

void Notification::Notify() {
  SB_REAL(void (*)(Notification*), "_ZN", "12Notification6NotifyEv");
  __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  SB_REAL(void (*)(const Notification*), "_ZNK", "12Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  SB_REAL(bool (*)(const Notification*, absl::Duration), "_ZNK",
          "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  SB_REAL(bool (*)(const Notification*, absl::Time), "_ZNK",
          "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl

// RedisLeaseService: the fleet's shared rate limits and membership, kept in
// the Redis that the replicas already share (DESIGN.md §4, "One limit for
// the fleet"). The LeaseService of every GlobalLimiter of a process.
//
// Owned by the server, built when a `scope: global` limit is configured. It
// holds two Redis connections of its own, named in CLIENT LIST:
//   * switchboard:limiter: leases, throttle reports and heartbeats, each one
//     script (lease_scripts.h) run with EVALSHA (EVAL when Redis answers
//     NOSCRIPT, after a restart or a SCRIPT FLUSH), auto-pipelined;
//   * switchboard:limiter-events: SUBSCRIBE to the pause notices.
// A command slower than `timeout` fails with DEADLINE_EXCEEDED, which puts
// the limiter that asked into its fallback share.
//
// Membership: every `heartbeat_interval` the replica renews its entry in the
// `switchboard:replicas` sorted set, which expires `replica_ttl` later; the
// count of live entries is the fallback's divisor and a gauge. Stop() asks
// Redis to take the replica out of the set (best effort: otherwise its entry
// expires).
//
// Times: Redis' clock decides; a reply's times are mapped to this process's
// clock with the offset measured on the fastest round trip seen (as NTP
// does), so replicas whose clocks disagree still agree on the schedule.
//
// Threading: construct, use and destroy on the I/O dispatcher's thread,
// which must be the thread of every GlobalLimiter using it. Callbacks run
// there, never inline.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/broker/redis/connection.h"
#include "server/event/dispatcher_impl.h"
#include "server/ratelimit/lease_service.h"

namespace switchboard::fleet {

struct FleetOptions {
  broker::redis::ConnectionOptions connection;
  // This replica's name in the fleet (unique; the pod name in Kubernetes).
  std::string replica_id;
  absl::Duration heartbeat_interval = absl::Milliseconds(500);
  absl::Duration replica_ttl = absl::Seconds(2);
  // How far ahead a lease reaches.
  absl::Duration horizon = absl::Milliseconds(50);
  // A lease or report slower than this fails.
  absl::Duration timeout = absl::Milliseconds(250);
};

// Membership, for the live-replicas gauge. Dispatcher thread.
class FleetObserver {
 public:
  virtual ~FleetObserver() = default;
  virtual void OnLiveReplicas(uint32_t replicas) = 0;
};

class RedisLeaseService final : public ratelimit::LeaseService {
 public:
  // `io`, and the observers, must outlive the service.
  RedisLeaseService(event::DispatcherImpl& io, FleetOptions options,
                    broker::redis::ConnectionObserver& connection_observer,
                    FleetObserver& fleet_observer);
  ~RedisLeaseService() override;

  RedisLeaseService(const RedisLeaseService&) = delete;
  RedisLeaseService& operator=(const RedisLeaseService&) = delete;

  // Connects and starts the heartbeat.
  void Start();
  // Leaves the fleet (best effort, before the connections close) and closes
  // them. Idempotent.
  void Stop();

  // ratelimit::LeaseService.
  void Lease(const ratelimit::SharedLimit& limit, ratelimit::LeaseRequest request,
             LeaseCallback done) override;
  void ReportThrottle(const ratelimit::SharedLimit& limit, absl::Duration pause) override;
  void Watch(const ratelimit::SharedLimit& limit, PauseCallback on_pause) override;
  void Unwatch(const ratelimit::SharedLimit& limit) override;
  absl::Duration horizon() const override { return options_.horizon; }
  uint32_t live_replicas() const override { return live_replicas_; }
  void Describe(const ratelimit::SharedLimit& limit, DescribeCallback done) override;

  const std::string& replica_id() const { return options_.replica_id; }

 private:
  enum class Script { kLease, kThrottle, kHeartbeat, kDescribe };
  using ScriptCallback = absl::AnyInvocable<void(absl::StatusOr<broker::redis::Reply>)>;

  // A script's reply as its callback uses it: the service (still there) and
  // the first elements of the reply as numbers.
  struct Unpacked {
    RedisLeaseService* service;
    std::vector<double> numbers;
  };
  static absl::StatusOr<Unpacked> Unpack(const std::weak_ptr<RedisLeaseService*>& self,
                                         const absl::StatusOr<broker::redis::Reply>& reply,
                                         size_t count);

  // Runs `script` with EVALSHA once its SHA is known, EVAL otherwise or on
  // NOSCRIPT. `done` gets the reply (a Redis error as a status).
  void Run(Script script, std::vector<std::string> keys, std::vector<std::string> args,
           ScriptCallback done);
  void SendScript(Script script, bool by_sha, std::vector<std::string> keys,
                  std::vector<std::string> args, ScriptCallback done);
  void LoadScripts();
  void Heartbeat();
  void OnEvent(const broker::redis::Reply& push);
  // Folds one round trip into the clock offset; `redis_now_us` was read
  // between `sent` and `received`.
  void SampleOffset(double redis_now_us, absl::Time sent, absl::Time received);
  absl::Time LocalTime(double redis_us) const;
  // How long the shared schedule waits for the other replicas to come back
  // from their fallback share after the first one did.
  absl::Duration RecoveryHold() const;

  event::DispatcherImpl& io_;
  const FleetOptions options_;
  FleetObserver& fleet_observer_;
  broker::redis::Connection commands_;
  broker::redis::Connection events_;
  std::string shas_[4];  // By Script; empty until loaded.
  uint32_t live_replicas_ = 1;
  // Redis' clock minus ours, from the fastest round trip so far.
  absl::Duration offset_;
  absl::Duration best_round_trip_ = absl::InfiniteDuration();
  absl::flat_hash_map<std::string, PauseCallback> watchers_;  // By limit key.
  std::unique_ptr<event::Timer> heartbeat_timer_;
  bool stopped_ = false;
  // Lets replies find out that the service is gone.
  std::shared_ptr<RedisLeaseService*> self_;
};

}  // namespace switchboard::fleet

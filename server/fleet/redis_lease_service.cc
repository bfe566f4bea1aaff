#include "server/fleet/redis_lease_service.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/broker/redis/command.h"
#include "server/common/log.h"
#include "server/fleet/lease_scripts.h"
#include "server/ratelimit/global_limiter.h"

namespace switchboard::fleet {
namespace {

using broker::redis::Command;
using broker::redis::Reply;

constexpr char kPrefix[] = "switchboard:";
constexpr char kEventsChannel[] = "switchboard:limit-events";
// How long a limit's state outlives its last use: long enough that a quiet
// spell keeps the shared rate (AIMD) and a pause, short enough that Redis
// forgets limits no longer configured.
constexpr absl::Duration kStateTtl = absl::Minutes(10);

const char* ScriptText(int script) {
  static const char* const kTexts[] = {kLeaseScript, kThrottleScript, kHeartbeatScript,
                                       kDescribeScript};
  return kTexts[script];
}

std::string StateKey(const ratelimit::SharedLimit& limit) {
  return absl::StrCat(kPrefix, "limit:", limit.key());
}
std::string LeasesKey(const ratelimit::SharedLimit& limit) {
  return absl::StrCat(kPrefix, "limit:", limit.key(), ":leases");
}
std::string RecoveredKey(const ratelimit::SharedLimit& limit) {
  return absl::StrCat(kPrefix, "limit:", limit.key(), ":recovered");
}
std::string ReplicasKey() { return absl::StrCat(kPrefix, "replicas"); }

std::string Number(double value) { return absl::StrCat(value); }

// The elements of a script's array reply, as numbers; INTERNAL when the
// reply is not what the script returns.
absl::StatusOr<std::vector<double>> Numbers(const Reply& reply, size_t count) {
  if (!reply.is_array() || reply.elements.size() < count) {
    return absl::InternalError("redis: unexpected reply to a limiter script");
  }
  std::vector<double> numbers(count);
  for (size_t i = 0; i < count; ++i) {
    const Reply& element = reply.elements[i];
    if (element.type == Reply::Type::kInteger) {
      numbers[i] = static_cast<double>(element.integer);
    } else if (!absl::SimpleAtod(element.str, &numbers[i])) {
      numbers[i] = 0;
    }
  }
  return numbers;
}

}  // namespace

absl::StatusOr<RedisLeaseService::Unpacked> RedisLeaseService::Unpack(
    const std::weak_ptr<RedisLeaseService*>& self, const absl::StatusOr<Reply>& reply,
    size_t count) {
  std::shared_ptr<RedisLeaseService*> service = self.lock();
  if (service == nullptr) return absl::UnavailableError("the fleet coordination is shutting down");
  if (!reply.ok()) return reply.status();
  absl::StatusOr<std::vector<double>> numbers = Numbers(*reply, count);
  if (!numbers.ok()) return numbers.status();
  return Unpacked{*service, *std::move(numbers)};
}

RedisLeaseService::RedisLeaseService(event::DispatcherImpl& io, FleetOptions options,
                                     broker::redis::ConnectionObserver& connection_observer,
                                     FleetObserver& fleet_observer)
    : io_(io),
      options_(std::move(options)),
      fleet_observer_(fleet_observer),
      commands_(io, options_.connection, "limiter", connection_observer),
      events_(io, options_.connection, "limiter-events", connection_observer),
      self_(std::make_shared<RedisLeaseService*>(this)) {}

RedisLeaseService::~RedisLeaseService() {
  self_.reset();  // Replies failed by closing the connections find no service.
  Stop();
}

void RedisLeaseService::Start() {
  std::weak_ptr<RedisLeaseService*> self = self_;
  commands_.Start([self](bool ready) {
    std::shared_ptr<RedisLeaseService*> service = self.lock();
    if (service == nullptr || !ready) return;
    (*service)->LoadScripts();
    (*service)->Heartbeat();
  });
  events_.Start(
      [self](bool ready) {
        std::shared_ptr<RedisLeaseService*> service = self.lock();
        if (service == nullptr || !ready) return;
        (*service)
            ->events_.SendPubSub(Command::Of({"SUBSCRIBE", kEventsChannel}))
            .IgnoreError();  // A failure resets the connection, which subscribes again.
      },
      [self](Reply push) {
        if (std::shared_ptr<RedisLeaseService*> service = self.lock()) (*service)->OnEvent(push);
      });
  heartbeat_timer_ = io_.CreateTimer([this] { Heartbeat(); });
  heartbeat_timer_->Enable(options_.heartbeat_interval);
}

void RedisLeaseService::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (heartbeat_timer_ != nullptr) heartbeat_timer_->Disable();
  // Leaving the fleet now lets the others' fallback share grow at once; the
  // command goes out before the connection closes, whatever its answer.
  if (commands_.ready()) {
    Command leave(6);
    leave.Add("EVAL")
        .Add(kHeartbeatScript)
        .Add(1)
        .Add(ReplicasKey())
        .Add(options_.replica_id)
        .Add(0);
    commands_.Send(leave, options_.timeout, [](absl::StatusOr<Reply>) {});
  }
  commands_.Close();
  events_.Close();
}

void RedisLeaseService::LoadScripts() {
  for (int script = 0; script < 4; ++script) {
    std::weak_ptr<RedisLeaseService*> self = self_;
    commands_.Send(Command::Of({"SCRIPT", "LOAD", ScriptText(script)}),
                   [self, script](absl::StatusOr<Reply> reply) {
                     std::shared_ptr<RedisLeaseService*> service = self.lock();
                     if (service == nullptr || !reply.ok() || !reply->is_string()) return;
                     (*service)->shas_[script] = reply->str;
                   });
  }
}

void RedisLeaseService::Run(Script script, std::vector<std::string> keys,
                            std::vector<std::string> args, ScriptCallback done) {
  const bool by_sha = !shas_[static_cast<int>(script)].empty();
  SendScript(script, by_sha, std::move(keys), std::move(args), std::move(done));
}

void RedisLeaseService::SendScript(Script script, bool by_sha, std::vector<std::string> keys,
                                   std::vector<std::string> args, ScriptCallback done) {
  const int index = static_cast<int>(script);
  Command command(3 + keys.size() + args.size());
  command.Add(by_sha ? "EVALSHA" : "EVAL");
  command.Add(by_sha ? absl::string_view(shas_[index]) : absl::string_view(ScriptText(index)));
  command.Add(static_cast<int64_t>(keys.size()));
  for (const std::string& key : keys) command.Add(key);
  for (const std::string& arg : args) command.Add(arg);
  std::weak_ptr<RedisLeaseService*> self = self_;
  commands_.Send(command, options_.timeout,
                 [self, script, by_sha, keys = std::move(keys), args = std::move(args),
                  done = std::move(done)](absl::StatusOr<Reply> reply) mutable {
                   if (reply.ok() && reply->is_error() &&
                       broker::redis::HasErrorCode(reply->str, "NOSCRIPT") && by_sha) {
                     // Redis lost its script cache (a restart, SCRIPT FLUSH):
                     // send the text, and load it again for next time.
                     std::shared_ptr<RedisLeaseService*> service = self.lock();
                     if (service != nullptr) {
                       (*service)->shas_[static_cast<int>(script)].clear();
                       (*service)->LoadScripts();
                       (*service)->SendScript(script, false, std::move(keys), std::move(args),
                                              std::move(done));
                       return;
                     }
                   }
                   if (reply.ok() && reply->is_error()) {
                     done(reply->status());
                     return;
                   }
                   done(std::move(reply));
                 });
}

void RedisLeaseService::Lease(const ratelimit::SharedLimit& limit, ratelimit::LeaseRequest request,
                              LeaseCallback done) {
  const absl::Time sent = io_.clock().Now();
  const double increase_per_unit = 1 / absl::ToDoubleSeconds(limit.aimd.recovery_time);
  std::weak_ptr<RedisLeaseService*> self = self_;
  Run(Script::kLease, {StateKey(limit), ReplicasKey(), LeasesKey(limit), RecoveredKey(limit)},
      {options_.replica_id, absl::StrCat(request.tokens), absl::StrCat(request.at_once),
       Number(limit.rate), Number(limit.burst),
       absl::StrCat(absl::ToInt64Microseconds(options_.horizon)),
       absl::StrCat(request.succeeded_cost), Number(increase_per_unit),
       absl::StrCat(absl::ToInt64Milliseconds(kStateTtl)),
       absl::StrCat(request.recovering ? absl::ToInt64Microseconds(RecoveryHold()) : 0),
       absl::StrCat(request.live_replicas)},
      [self, sent, done = std::move(done)](absl::StatusOr<Reply> reply) mutable {
        absl::StatusOr<Unpacked> unpacked = Unpack(self, reply, 8);
        if (!unpacked.ok()) {
          done(unpacked.status());
          return;
        }
        RedisLeaseService& me = *unpacked->service;
        const std::vector<double>& n = unpacked->numbers;
        me.SampleOffset(n[6], sent, me.io_.clock().Now());
        me.live_replicas_ = std::max<uint32_t>(1, static_cast<uint32_t>(n[7]));
        ratelimit::Lease lease;
        lease.tokens = static_cast<uint32_t>(n[0]);
        lease.not_before = me.LocalTime(n[1]);
        lease.first_slot = me.LocalTime(n[2]);
        lease.interval = absl::Microseconds(n[3]);
        lease.rate = n[4];
        lease.paused_until = n[5] > 0 ? me.LocalTime(n[5]) : absl::InfinitePast();
        lease.live_replicas = me.live_replicas_;
        done(lease);
      });
}

void RedisLeaseService::ReportThrottle(const ratelimit::SharedLimit& limit, absl::Duration pause) {
  Run(Script::kThrottle, {StateKey(limit)},
      {absl::StrCat(absl::ToInt64Microseconds(pause)), Number(limit.rate), Number(limit.burst),
       Number(limit.aimd.decrease_factor), Number(limit.rate * limit.aimd.min_rate_fraction),
       absl::StrCat(absl::ToInt64Milliseconds(kStateTtl)), kEventsChannel, limit.key()},
      [key = limit.key()](absl::StatusOr<Reply> reply) {
        if (!reply.ok()) {
          SB_LOG(
              kWarning, "global limit ", key,
              ": could not share a provider throttle with the fleet: ", reply.status().message());
        }
      });
}

void RedisLeaseService::Watch(const ratelimit::SharedLimit& limit, PauseCallback on_pause) {
  watchers_[limit.key()] = std::move(on_pause);
}

void RedisLeaseService::Unwatch(const ratelimit::SharedLimit& limit) {
  watchers_.erase(limit.key());
}

void RedisLeaseService::OnEvent(const Reply& push) {
  // ["message", channel, "<kind>:<name> <paused until us> <rate>"]
  if (!push.is_array() || push.elements.size() != 3 || push.elements[0].str != "message") return;
  std::vector<absl::string_view> fields = absl::StrSplit(push.elements[2].str, ' ');
  double paused_us = 0;
  double rate = 0;
  if (fields.size() != 3 || !absl::SimpleAtod(fields[1], &paused_us) ||
      !absl::SimpleAtod(fields[2], &rate)) {
    return;
  }
  auto watcher = watchers_.find(fields[0]);
  if (watcher == watchers_.end()) return;
  watcher->second(ratelimit::PauseNotice{LocalTime(paused_us), rate});
}

void RedisLeaseService::Heartbeat() {
  if (stopped_) return;
  heartbeat_timer_->Enable(options_.heartbeat_interval);
  std::weak_ptr<RedisLeaseService*> self = self_;
  Run(Script::kHeartbeat, {ReplicasKey()},
      {options_.replica_id, absl::StrCat(absl::ToInt64Milliseconds(options_.replica_ttl))},
      [self](absl::StatusOr<Reply> reply) {
        std::shared_ptr<RedisLeaseService*> service = self.lock();
        if (service == nullptr || !reply.ok() || reply->type != Reply::Type::kInteger) return;
        (*service)->live_replicas_ = std::max<uint32_t>(1, static_cast<uint32_t>(reply->integer));
        (*service)->fleet_observer_.OnLiveReplicas((*service)->live_replicas_);
      });
}

void RedisLeaseService::Describe(const ratelimit::SharedLimit& limit, DescribeCallback done) {
  std::weak_ptr<RedisLeaseService*> self = self_;
  Run(Script::kDescribe, {StateKey(limit), LeasesKey(limit), ReplicasKey()}, {},
      [self, configured = limit.rate, done = std::move(done)](absl::StatusOr<Reply> reply) mutable {
        absl::StatusOr<Unpacked> unpacked = Unpack(self, reply, 5);
        if (!unpacked.ok()) {
          done(unpacked.status());
          return;
        }
        RedisLeaseService& me = *unpacked->service;
        const std::vector<double>& n = unpacked->numbers;
        const double now_us = n[0];
        ratelimit::SharedLimitState state;
        state.configured_rate = configured;
        state.rate = n[1];
        state.paused_until = n[2] > now_us ? me.LocalTime(n[2]) : absl::InfinitePast();
        state.live_replicas = static_cast<uint32_t>(n[4]);
        for (size_t i = 5; i + 1 < reply->elements.size(); i += 2) {
          // "<tokens> <last slot us> <interval us>"
          std::vector<absl::string_view> fields = absl::StrSplit(reply->elements[i + 1].str, ' ');
          double tokens = 0, last_us = 0, interval_us = 0;
          if (fields.size() != 3 || !absl::SimpleAtod(fields[0], &tokens) ||
              !absl::SimpleAtod(fields[1], &last_us) ||
              !absl::SimpleAtod(fields[2], &interval_us) || interval_us <= 0) {
            continue;
          }
          ratelimit::ReplicaLease lease;
          lease.replica_id = reply->elements[i].str;
          const double ahead = last_us < now_us ? 0 : (last_us - now_us) / interval_us + 1;
          lease.tokens_ahead = static_cast<uint32_t>(std::min(tokens, ahead));
          lease.age = absl::Microseconds(now_us - last_us);
          state.replicas.push_back(std::move(lease));
        }
        done(std::move(state));
      });
}

void RedisLeaseService::SampleOffset(double redis_now_us, absl::Time sent, absl::Time received) {
  const absl::Duration round_trip = received - sent;
  // A round trip at most 50% (and 100 us) slower than the fastest one
  // still measures the offset well; slower ones are queueing, not clocks.
  if (round_trip > best_round_trip_ * 1.5 + absl::Microseconds(100)) return;
  best_round_trip_ = std::min(best_round_trip_, round_trip);
  offset_ = absl::Microseconds(redis_now_us) - ((sent - absl::UnixEpoch()) + round_trip / 2);
}

absl::Duration RedisLeaseService::RecoveryHold() const {
  // Every other replica's limiter connection is back within its reconnect
  // backoff's ceiling, and its limiter leases within its fallback retry
  // period and a round trip.
  return options_.connection.reconnect_max + 2 * options_.timeout +
         ratelimit::GlobalLimiter::kFallbackRetry;
}

absl::Time RedisLeaseService::LocalTime(double redis_us) const {
  return absl::UnixEpoch() + absl::Microseconds(redis_us) - offset_;
}

}  // namespace switchboard::fleet

// sbctl: the Switchboard command line. Parses flags, builds the one Client
// and runs a subcommand (commands.h, bench.h). Exit codes: 0 success, 1 an
// error from the server or the connection (printed on stderr as
// `CODE: message`), 2 a usage error. (The file is named sbctl_main.cc so that
// absl's --help lists the flags defined here.)
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench.h"
#include "client/flags/connection_flags.h"
#include "commands.h"
#include "switchboard/client/client.h"

ABSL_FLAG(int64_t, count, 0,
          "subscribe, consume, watch: exit after this many messages (watch: notifications); 0 "
          "runs until stopped.");
ABSL_FLAG(std::string, unsubscribe_method, "",
          "watch: the method that ends the subscription at the provider; empty: derived "
          "(fooSubscribe -> fooUnsubscribe, <ns>_subscribe -> <ns>_unsubscribe).");
ABSL_FLAG(std::string, group, "",
          "consume, bench consume: the consumer group; bench latency: consume in this group "
          "(durable topic), or subscribe when empty (ephemeral topic).");
ABSL_FLAG(uint32_t, max_in_flight, 100,
          "consume, bench consume, bench latency: unacknowledged deliveries per stream.");
ABSL_FLAG(bool, print_ids, false,
          "publish: print each message id on stdout, one per line, in input order.");
ABSL_FLAG(std::string, service, "",
          "health: the service to check (\"\" is the server, \"switchboard.v1.Broker\" the "
          "broker).");
ABSL_FLAG(std::string, topic, "bench", "bench: the topic.");
ABSL_FLAG(int, streams, 8, "bench: concurrent streams, all on one channel.");
ABSL_FLAG(int, window, 16, "bench publish: requests in flight per stream.");
ABSL_FLAG(int, batch, 1, "bench publish: messages per request.");
ABSL_FLAG(int, publishers, 50,
          "bench publisher: publishers sharing one Publisher, each waiting for its message's id.");
ABSL_FLAG(bool, callbacks, false,
          "bench publisher: each publisher a chain of Publish callbacks, not a thread.");
ABSL_FLAG(std::optional<int>, max_in_flight_requests, std::nullopt,
          "bench publisher: the Publisher's max_in_flight_requests (default: its own).");
ABSL_FLAG(
    std::optional<int>, max_attempts, std::nullopt,
    "bench publisher: the Publisher's max_attempts; 1 sends no dedup ids (default: its own).");
ABSL_FLAG(int, size, 100, "bench: payload bytes per message.");
ABSL_FLAG(double, duration, 10, "bench: seconds to run.");
ABSL_FLAG(std::optional<double>, rate, std::nullopt,
          "bench latency: messages published per second (default 1000); bench call: calls "
          "started per second, open loop (default: none, a closed loop of --concurrency "
          "callers).");
ABSL_FLAG(std::string, upstream, "", "bench call: the upstream, by its configured name.");
ABSL_FLAG(std::string, method, "", "bench call: the JSON-RPC method.");
ABSL_FLAG(std::string, params, "",
          "bench call: the params of every call, as JSON; empty: call i sends [i], so that "
          "the server coalesces no two calls.");
ABSL_FLAG(int, concurrency, 16, "bench call: calls in flight (closed loop).");
ABSL_FLAG(bool, stream, false,
          "bench call: multiplex every call on one CallStream instead of unary Calls.");
ABSL_FLAG(int64_t, messages, 100000,
          "bench consume: messages to publish before the clock starts; 0 consumes the backlog.");
ABSL_FLAG(int, keys, 0,
          "bench consume: ordering keys of the pre-published messages, message i with key "
          "\"k<i % keys>\"; 0: no key.");

namespace switchboard::sbctl {
namespace {

constexpr int kExitUsage = 2;

constexpr char kUsage[] = R"(the Switchboard command line.

  sbctl [--server=HOST:PORT] [--token=T] [--tls] [--tls_ca=FILE]
        [--tls_cert=FILE --tls_key=FILE] [--tls_server_name=NAME] COMMAND ...

  publish TOPIC [MSG...]       publish the MSGs, or one message per stdin line;
                               stdout stays quiet unless --print_ids
  subscribe TOPIC [--count=N]  print each message of an ephemeral topic
  consume TOPIC --group=G [--count=N] [--max_in_flight=K]
                               print and ack each message of a durable topic
  health [--service=S]         exit 0 when S is SERVING
  limit UPSTREAM               the upstream's rate limit: scope, rate, queue and,
                               for a global limit, the fleet's replicas, pause,
                               fallback and tokens ahead by replica
  call UPSTREAM METHOD [PARAMS_JSON]
                               one JSON-RPC call through Switchboard; prints the
                               result (a JSON-RPC error goes to stderr, exit 1)
  watch UPSTREAM METHOD [PARAMS_JSON] [--count=N] [--unsubscribe_method=M]
                               a provider subscription (slotSubscribe,
                               eth_subscribe, ...) through Switchboard: prints
                               each notification's result, one per line
  bench publish --topic=T --streams=S --batch=B --size=BYTES --duration=SEC [--window=W]
  bench publisher --topic=T --publishers=P --size=BYTES --duration=SEC
                  [--max_in_flight_requests=K] [--max_attempts=A] [--callbacks]
  bench consume --topic=T --group=G --streams=S --duration=SEC [--messages=N] [--keys=K]
  bench latency --topic=T --rate=R --duration=SEC [--group=G] [--size=BYTES]
  bench call --upstream=U --method=M [--params=JSON] --concurrency=C --duration=SEC [--rate=R]
             [--stream]
                               load generators; progress on stderr, a JSON summary
                               as the last line on stdout. publisher runs P threads
                               on one auto-batching Publisher, each publishing one
                               message and waiting for its id. latency publishes R msgs/s
                               and times each to its delivery: consumed in group G,
                               or subscribed without --group. call keeps C calls in
                               flight (or starts R per second); without --params
                               call i sends [i], so that none is coalesced; unary
                               Calls, or with --stream all on one CallStream

Exit codes: 0 success; 1 an error from the server or the connection, printed
on stderr as `CODE: message`; 2 a usage error.)";

int UsageError(const std::string& message) {
  std::cerr << "sbctl: " << message << " (see --help)" << std::endl;
  return kExitUsage;
}

int RunBench(const client::Client& client, const std::vector<std::string>& args) {
  if (args.size() != 2) {
    return UsageError("bench takes one mode: publish, publisher, consume, latency or call");
  }
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_duration));
  if (args[1] == "publish") {
    PublishBenchOptions options;
    options.topic = absl::GetFlag(FLAGS_topic);
    options.streams = absl::GetFlag(FLAGS_streams);
    options.window = absl::GetFlag(FLAGS_window);
    options.batch = absl::GetFlag(FLAGS_batch);
    options.size = absl::GetFlag(FLAGS_size);
    options.duration = duration;
    if (options.streams < 1 || options.window < 1 || options.batch < 1 || options.size < 0) {
      return UsageError("--streams, --window and --batch must be at least 1, --size at least 0");
    }
    return BenchPublish(client, options);
  }
  if (args[1] == "publisher") {
    PublisherBenchOptions options;
    options.topic = absl::GetFlag(FLAGS_topic);
    options.publishers = absl::GetFlag(FLAGS_publishers);
    options.callbacks = absl::GetFlag(FLAGS_callbacks);
    options.size = absl::GetFlag(FLAGS_size);
    options.duration = duration;
    const std::optional<int> in_flight = absl::GetFlag(FLAGS_max_in_flight_requests);
    const std::optional<int> attempts = absl::GetFlag(FLAGS_max_attempts);
    if (options.publishers < 1 || options.size < 0 || in_flight.value_or(1) < 1 ||
        attempts.value_or(1) < 1) {
      return UsageError(
          "--publishers, --max_in_flight_requests and --max_attempts must be at least 1, --size "
          "at least 0");
    }
    options.max_in_flight_requests = static_cast<std::size_t>(in_flight.value_or(0));
    options.max_attempts = attempts.value_or(0);
    return BenchPublisher(client, options);
  }
  if (args[1] == "consume") {
    ConsumeBenchOptions options;
    options.topic = absl::GetFlag(FLAGS_topic);
    options.group = absl::GetFlag(FLAGS_group);
    options.streams = absl::GetFlag(FLAGS_streams);
    options.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
    options.messages = absl::GetFlag(FLAGS_messages);
    options.size = absl::GetFlag(FLAGS_size);
    options.keys = absl::GetFlag(FLAGS_keys);
    options.duration = duration;
    if (options.group.empty()) return UsageError("bench consume needs --group");
    if (options.streams < 1 || options.messages < 0 || options.size < 0 || options.keys < 0) {
      return UsageError("--streams must be at least 1, --messages, --size and --keys at least 0");
    }
    return BenchConsume(client, options);
  }
  if (args[1] == "latency") {
    LatencyBenchOptions options;
    options.topic = absl::GetFlag(FLAGS_topic);
    options.group = absl::GetFlag(FLAGS_group);
    options.rate = absl::GetFlag(FLAGS_rate).value_or(options.rate);
    options.size = absl::GetFlag(FLAGS_size);
    options.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
    options.duration = duration;
    if (!(options.rate > 0) || options.size < 0) {
      return UsageError("--rate must be above 0, --size at least 0");
    }
    return BenchLatency(client, options);
  }
  if (args[1] == "call") {
    CallBenchOptions options;
    options.upstream = absl::GetFlag(FLAGS_upstream);
    options.method = absl::GetFlag(FLAGS_method);
    options.params_json = absl::GetFlag(FLAGS_params);
    options.concurrency = absl::GetFlag(FLAGS_concurrency);
    options.stream = absl::GetFlag(FLAGS_stream);
    const std::optional<double> rate = absl::GetFlag(FLAGS_rate);
    options.rate = rate.value_or(0);
    options.duration = duration;
    if (options.upstream.empty() || options.method.empty()) {
      return UsageError("bench call needs --upstream and --method");
    }
    if (options.concurrency < 1 || (rate.has_value() && !(*rate > 0))) {
      return UsageError("--concurrency must be at least 1, --rate above 0");
    }
    return BenchCall(client, options);
  }
  return UsageError(absl::StrCat("unknown bench mode '", args[1], "'"));
}

int Run(const std::vector<std::string>& args) {
  if (args.empty()) return UsageError("no command");
  absl::StatusOr<client::ClientOptions> options = client::ClientOptionsFromFlags();
  if (!options.ok()) return UsageError(absl::StrCat("--", options.status().message()));
  const client::Client client(*std::move(options));
  const std::string& command = args[0];
  if (command == "publish") {
    if (args.size() < 2) return UsageError("publish needs a TOPIC");
    return Publish(client, args[1], std::vector<std::string>(args.begin() + 2, args.end()),
                   absl::GetFlag(FLAGS_print_ids));
  }
  if (command == "call") {
    if (args.size() < 3 || args.size() > 4) {
      return UsageError("call takes UPSTREAM METHOD [PARAMS_JSON]");
    }
    return Call(client, args[1], args[2], args.size() == 4 ? args[3] : "");
  }
  if (command == "watch") {
    if (args.size() < 3 || args.size() > 4) {
      return UsageError("watch takes UPSTREAM METHOD [PARAMS_JSON]");
    }
    if (absl::GetFlag(FLAGS_count) < 0) return UsageError("--count must be at least 0");
    return Watch(client, args[1], args[2], args.size() == 4 ? args[3] : "",
                 absl::GetFlag(FLAGS_unsubscribe_method), absl::GetFlag(FLAGS_count));
  }
  if (command == "subscribe") {
    if (args.size() != 2) return UsageError("subscribe takes one TOPIC");
    return Subscribe(client, args[1], absl::GetFlag(FLAGS_count));
  }
  if (command == "consume") {
    if (args.size() != 2) return UsageError("consume takes one TOPIC");
    if (absl::GetFlag(FLAGS_group).empty()) return UsageError("consume needs --group");
    return Consume(client, args[1], absl::GetFlag(FLAGS_group), absl::GetFlag(FLAGS_count),
                   absl::GetFlag(FLAGS_max_in_flight));
  }
  if (command == "health") {
    if (args.size() != 1) return UsageError("health takes no argument");
    return Health(client, absl::GetFlag(FLAGS_service));
  }
  if (command == "limit") {
    if (args.size() != 2) return UsageError("limit takes one UPSTREAM");
    return Limit(client, args[1]);
  }
  if (command == "bench") return RunBench(client, args);
  return UsageError(absl::StrCat("unknown command '", command, "'"));
}

}  // namespace
}  // namespace switchboard::sbctl

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(switchboard::sbctl::kUsage);
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  // Debian's Abseil checks every lock (gRPC's too) for deadlock cycles: a
  // cost per call that a load generator must not pay.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return switchboard::sbctl::Run(
      std::vector<std::string>(positional.begin() + 1, positional.end()));
}

#include "commands.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <future>
#include <iostream>
#include <utility>

#include "switchboard/client/consumer.h"
#include "switchboard/client/publisher.h"
#include "switchboard/client/subscriber.h"
#include "switchboard/client/watcher.h"

namespace switchboard::sbctl {
namespace {

// Publishes awaiting their ids at most; well below the Publisher's
// outstanding bound, so Publish() never refuses a message.
constexpr std::size_t kPublishWindow = 1000;

void PrintLine(const std::string& payload) {
  std::fwrite(payload.data(), 1, payload.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace

int ReportFailure(const absl::Status& status) {
  std::cerr << status.ToString() << std::endl;
  return kExitFailure;
}

int Publish(const client::Client& client, const std::string& topic,
            const std::vector<std::string>& messages, bool print_ids) {
  client::Publisher publisher(client, topic);
  std::deque<std::future<absl::StatusOr<std::string>>> awaiting;
  const auto settle_oldest = [&]() -> absl::Status {
    absl::StatusOr<std::string> id = awaiting.front().get();
    awaiting.pop_front();
    if (!id.ok()) return id.status();
    if (print_ids) std::cout << *id << '\n';
    return absl::OkStatus();
  };
  const auto publish = [&](std::string payload) -> absl::Status {
    v1::OutgoingMessage message;
    message.set_payload(std::move(payload));
    awaiting.push_back(publisher.Publish(std::move(message)));
    return awaiting.size() >= kPublishWindow ? settle_oldest() : absl::OkStatus();
  };

  bool published_any = false;
  absl::Status status;
  if (!messages.empty()) {
    for (const std::string& payload : messages) {
      if (status = publish(payload); !status.ok()) return ReportFailure(status);
    }
    published_any = true;
  } else {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (status = publish(std::move(line)); !status.ok()) return ReportFailure(status);
      published_any = true;
    }
  }
  while (!awaiting.empty()) {
    if (status = settle_oldest(); !status.ok()) return ReportFailure(status);
  }
  std::cout.flush();
  if (!published_any) {
    absl::StatusOr<std::vector<std::string>> ids = client.Publish(topic, {});
    if (!ids.ok()) return ReportFailure(ids.status());
  }
  return 0;
}

int Subscribe(const client::Client& client, const std::string& topic, int64_t count) {
  std::atomic<int64_t> received{0};
  client::Subscriber subscriber(client, topic, [&](const v1::SubscribeResponse& response) {
    if (response.dropped_since_last() > 0) {
      std::cerr << "sbctl: the server dropped " << response.dropped_since_last()
                << " messages before this one" << std::endl;
    }
    PrintLine(response.message().payload());
    if (++received == count) subscriber.Stop();
  });
  const absl::Status status = subscriber.Wait();
  if (count > 0 && received.load() >= count) return 0;
  return ReportFailure(status.ok() ? absl::UnavailableError("the server ended the subscription")
                                   : status);
}

int Consume(const client::Client& client, const std::string& topic, const std::string& group,
            int64_t count, uint32_t max_in_flight) {
  client::ConsumerOptions options;
  options.group = group;
  options.max_in_flight =
      count > 0 ? static_cast<uint32_t>(std::min<int64_t>(count, max_in_flight)) : max_in_flight;
  options.concurrency = 1;  // Payloads print in delivery order.
  int64_t handled = 0;      // Only the one handler thread touches it.
  std::atomic<bool> reached_count{false};
  client::Consumer consumer(
      client, topic, options, [&](const v1::Delivery& delivery) -> absl::Status {
        if (reached_count.load()) {
          return absl::CancelledError("sbctl: count reached; the message goes back");
        }
        PrintLine(delivery.message().payload());
        if (++handled == count) {
          reached_count = true;
          consumer.Stop();
        }
        return absl::OkStatus();
      });
  const absl::Status status = consumer.Wait();
  if (!status.ok()) return ReportFailure(status);
  return 0;
}

int Call(const client::Client& client, const std::string& upstream, const std::string& method,
         const std::string& params_json) {
  v1::CallRequest request;
  request.set_upstream(upstream);
  request.set_method(method);
  request.set_params_json(params_json);
  absl::Duration retry_after = absl::ZeroDuration();
  absl::StatusOr<v1::CallResponse> response = client.Call(request, &retry_after);
  if (!response.ok()) {
    if (retry_after > absl::ZeroDuration()) {
      std::cerr << "retry after " << absl::FormatDuration(retry_after) << std::endl;
    }
    return ReportFailure(response.status());
  }
  if (response->has_error_json()) {
    std::cerr << response->error_json() << std::endl;
    return kExitFailure;
  }
  std::cout << response->result_json() << std::endl;
  return 0;
}

int Watch(const client::Client& client, const std::string& upstream, const std::string& method,
          const std::string& params_json, const std::string& unsubscribe_method, int64_t count) {
  v1::RpcSubscribeRequest request;
  request.set_upstream(upstream);
  request.set_method(method);
  request.set_params_json(params_json);
  request.set_unsubscribe_method(unsubscribe_method);
  std::atomic<int64_t> received{0};
  client::Watcher watcher(client, std::move(request), [&](const v1::RpcNotification& notification) {
    if (notification.dropped_since_last() > 0) {
      std::cerr << "sbctl: the server dropped " << notification.dropped_since_last()
                << " notifications before this one" << std::endl;
    }
    if (notification.after_resubscribe()) {
      std::cerr << "sbctl: Switchboard subscribed again after losing its provider connection; "
                   "notifications may have been missed before this one"
                << std::endl;
    }
    PrintLine(notification.result_json());
    if (++received == count) watcher.Stop();
  });
  const absl::Status status = watcher.Wait();
  if (count > 0 && received.load() >= count) return 0;
  return ReportFailure(status.ok() ? absl::UnavailableError("the server ended the subscription")
                                   : status);
}

int Health(const client::Client& client, const std::string& service) {
  using grpc::health::v1::HealthCheckResponse;
  absl::StatusOr<HealthCheckResponse::ServingStatus> serving = client.CheckHealth(service);
  if (!serving.ok()) return ReportFailure(serving.status());
  const std::string name = HealthCheckResponse::ServingStatus_Name(*serving);
  if (*serving != HealthCheckResponse::SERVING) {
    std::cerr << name << std::endl;
    return kExitFailure;
  }
  std::cout << name << std::endl;
  return 0;
}

int Limit(const client::Client& client, const std::string& upstream) {
  absl::StatusOr<v1::DescribeLimitResponse> limit = client.DescribeLimit(upstream);
  if (!limit.ok()) return ReportFailure(limit.status());
  std::cout << "upstream: " << limit->upstream() << "\n"
            << "scope: " << limit->scope() << "\n"
            << "configured_rate: " << limit->configured_rate() << "\n"
            << "rate: " << limit->rate() << "\n"
            << "burst: " << limit->burst() << "\n"
            << "queue_depth: " << limit->queue_depth() << "\n"
            << "in_flight: " << limit->in_flight() << "\n";
  if (limit->scope() == "global") {
    std::cout << "replica: " << limit->replica_id() << "\n"
              << "fallback: " << (limit->fallback() ? "yes" : "no") << "\n";
    if (!limit->shared_error().empty()) {
      std::cout << "shared_state: unavailable (" << limit->shared_error() << ")\n";
    } else {
      std::cout << "live_replicas: " << limit->live_replicas() << "\n"
                << "paused_for_ms: " << limit->paused_for_ms() << "\n";
      for (const auto& replica : limit->replicas()) {
        std::cout << "tokens_ahead[" << replica.replica_id() << "]: " << replica.tokens_ahead()
                  << "\n";
      }
    }
  }
  std::cout << std::flush;
  return 0;
}

}  // namespace switchboard::sbctl

// What the config tests share: a fake environment and the example of the
// configuration reference, with the environment it expands against.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "server/config/config.h"

namespace switchboard::config::testing_examples {

inline EnvLookup FakeEnv(std::map<std::string, std::string> variables = {}) {
  return [variables = std::move(variables)](const std::string& name) -> std::optional<std::string> {
    auto it = variables.find(name);
    if (it == variables.end()) return std::nullopt;
    return it->second;
  };
}

// The example of the configuration reference.
inline constexpr char kExample[] = R"yaml(
server:
  listen: "0.0.0.0:7070"
  metrics_listen: "0.0.0.0:9464"
  drain_timeout_ms: 5000
broker:
  url: "redis://:${REDIS_PASSWORD}@redis:6379/0"
limits:
  max_message_bytes: 2097152
  max_batch_messages: 500
  max_streams_per_client: 100
topics:
  - name: "news.*"
    kind: ephemeral
    buffer: 200
    overflow: drop_newest
  - name: jobs
    kind: durable
    max_len: 5000
    ack_deadline_ms: 15000
    max_delivery_attempts: 3
    dead_letter_suffix: ".dead"
    exclusive: true
upstreams:
  - name: solana
    urls: ["http://127.0.0.1:8899", "https://rpc.example.com/${RPC_KEY}"]
    max_connections: 2
    http2: false
    timeout_ms: 10000
    rate_limit: {requests_per_second: 100, burst: 10}
    method_cost: {getProgramAccounts: 10}
    retry: {max_attempts: 3, methods: ["getSlot", "getBalance"]}
    cache_ttl_ms: {getGenesisHash: 3600000, getSlot: 400}
clients:
  - {id: burn-detector, token: "${BURN_TOKEN}", weight: 2, requests_per_second: 50,
     allowed_topics: ["jobs", "news.*"]}
  - {id: indexer, token: "static-token"}
logging:
  level: debug
)yaml";

inline EnvLookup ExampleEnv() {
  return FakeEnv(
      {{"REDIS_PASSWORD", "hunter2"}, {"BURN_TOKEN", "burn-secret"}, {"RPC_KEY", "k3y"}});
}

}  // namespace switchboard::config::testing_examples

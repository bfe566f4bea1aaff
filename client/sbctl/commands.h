// sbctl's everyday subcommands: publish, subscribe, consume, call, watch,
// health and limit. Each runs to completion on the calling thread and returns
// the process exit code: 0 on success, 1 when the server (or the connection)
// reported an error, which is printed on stderr as `CODE: message`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "switchboard/client/client.h"

namespace switchboard::sbctl {

// Exit code for a failure reported by the server or the connection.
inline constexpr int kExitFailure = 1;

// Prints `status` on stderr and returns kExitFailure.
int ReportFailure(const absl::Status& status);

// Publishes `messages`, or one message per stdin line when `messages` is
// empty. Prints each message id on stdout, in input order, when `print_ids`;
// otherwise stdout stays quiet. With no message at all it still asks the
// server (an empty unary Publish), so a bad topic is always reported.
int Publish(const client::Client& client, const std::string& topic,
            const std::vector<std::string>& messages, bool print_ids);

// Prints each payload on its own line; exits after `count` messages (0: runs
// until the stream ends).
int Subscribe(const client::Client& client, const std::string& topic, int64_t count);

// Prints each payload on its own line and acks it; exits after `count`
// messages (0: runs until interrupted). The server hands out at most
// min(count, max_in_flight) messages at a time, so none is received beyond
// `count`.
int Consume(const client::Client& client, const std::string& topic, const std::string& group,
            int64_t count, uint32_t max_in_flight);

// Calls `method` with `params_json` (empty: none) on `upstream` and prints
// the provider's result JSON on stdout; a JSON-RPC error object is printed on
// stderr and exits 1, as does a failed call (with its retry delay when the
// server gave one).
int Call(const client::Client& client, const std::string& upstream, const std::string& method,
         const std::string& params_json);

// `sbctl watch`: subscribes to `method` with `params_json` (empty: none) at
// `upstream`'s provider through Switchboard and prints each notification's
// result JSON on stdout, byte for byte as the provider sent it, one per line,
// flushed per line. Notes on stderr when the stream lost notifications to
// its buffer or Switchboard subscribed again. Exits 0 after `count`
// notifications (0: runs until the stream ends or a signal); a stream that
// ends first (an unknown upstream, the provider's refusal, a drain) exits 1
// with its status.
int Watch(const client::Client& client, const std::string& upstream, const std::string& method,
          const std::string& params_json, const std::string& unsubscribe_method, int64_t count);

// Exits 0 and prints SERVING when `service` is serving; otherwise prints its
// status (or the call's error) on stderr and exits 1.
int Health(const client::Client& client, const std::string& service);

// `sbctl limit UPSTREAM`: prints the upstream's rate limit, one `key: value`
// line each: scope, rates, this replica's queue and, for a global limit, the
// fleet's live replicas, pause, fallback and tokens ahead by replica.
int Limit(const client::Client& client, const std::string& upstream);

}  // namespace switchboard::sbctl

// amqp_perf: a direct rabbitmq-c client, the baseline rows of
// bench_rabbitmq.sh (RabbitMQ's PerfTest, reduced to what Switchboard does):
// it stores what Switchboard stores, persistent messages in a durable quorum
// queue, routed by a durable direct exchange (amq.direct, the queue bound with
// its own name), with publisher confirms; and consumes with a prefetch,
// acking each delivery on its own, as Switchboard's group consumer does.
//
//   amqp_perf publish --port=P --queue=Q --size=B --window=W --duration=S
//       publishes for S seconds with at most W messages unconfirmed (W=1:
//       each waits for its confirm), counting the messages confirmed in
//       those S seconds; with --messages=N, publishes exactly N and waits for
//       every confirm (a pre-fill), whatever the time.
//   amqp_perf consume --port=P --queue=Q --prefetch=K --messages=N
//       basic.consume with prefetch K, acks each delivery, until N are acked
//       (at most --duration seconds); the clock starts at basic.consume.
//   amqp_perf purge|delete --port=P --queue=Q
//
// publish and consume declare the queue (durable, x-queue-type quorum) and
// its binding first; each prints a JSON summary as its last stdout line, with
// `msgs` and `msgs_per_sec` as `sbctl bench` does. Exit 1 on any AMQP error.
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "RabbitMQ's host");
ABSL_FLAG(int, port, 5672, "RabbitMQ's AMQP port");
ABSL_FLAG(std::string, queue, "", "the quorum queue");
ABSL_FLAG(int, size, 100, "publish: payload bytes per message");
ABSL_FLAG(int, window, 1, "publish: at most this many messages unconfirmed");
ABSL_FLAG(double, duration, 10,
          "publish: seconds to publish; consume: give up after this many seconds");
ABSL_FLAG(int64_t, messages, 0,
          "publish: exactly this many, then wait for every confirm (0: for --duration); "
          "consume: stop once this many are acked");
ABSL_FLAG(int, prefetch, 100, "consume: basic.qos prefetch count");

namespace switchboard::amqp_perf {
namespace {

constexpr amqp_channel_t kChannel = 1;

[[noreturn]] void Fail(const std::string& what) {
  std::cerr << "amqp_perf: " << what << std::endl;
  std::exit(1);
}

void CheckReply(amqp_connection_state_t connection, const char* what) {
  const amqp_rpc_reply_t reply = amqp_get_rpc_reply(connection);
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      Fail(absl::StrCat(what, ": ", amqp_error_string2(reply.library_error)));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* close = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
        Fail(absl::StrCat(
            what, ": channel closed: ",
            std::string(static_cast<const char*>(close->reply_text.bytes), close->reply_text.len)));
      }
      Fail(absl::StrCat(what, ": server exception, method ", reply.reply.id));
    default:
      Fail(absl::StrCat(what, ": no reply"));
  }
}

amqp_connection_state_t Connect() {
  amqp_connection_state_t connection = amqp_new_connection();
  amqp_socket_t* socket = amqp_tcp_socket_new(connection);
  if (socket == nullptr) Fail("cannot create a socket");
  struct timeval timeout = absl::ToTimeval(absl::Seconds(10));
  const std::string host = absl::GetFlag(FLAGS_host);
  if (int opened =
          amqp_socket_open_noblock(socket, host.c_str(), absl::GetFlag(FLAGS_port), &timeout);
      opened != AMQP_STATUS_OK) {
    Fail(absl::StrCat("connect: ", amqp_error_string2(opened)));
  }
  const amqp_rpc_reply_t login =
      amqp_login(connection, "/", /*channel_max=*/0, AMQP_DEFAULT_FRAME_SIZE, /*heartbeat=*/0,
                 AMQP_SASL_METHOD_PLAIN, "guest", "guest");
  if (login.reply_type != AMQP_RESPONSE_NORMAL) Fail("login failed");
  amqp_channel_open(connection, kChannel);
  CheckReply(connection, "channel.open");
  return connection;
}

void Close(amqp_connection_state_t connection) {
  amqp_channel_close(connection, kChannel, AMQP_REPLY_SUCCESS);
  amqp_connection_close(connection, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(connection);
}

// Declares the durable quorum queue and binds it to amq.direct with its name;
// returns its ready messages.
uint32_t DeclareQueue(amqp_connection_state_t connection, const std::string& queue) {
  amqp_table_entry_t type;
  type.key = amqp_cstring_bytes("x-queue-type");
  type.value.kind = AMQP_FIELD_KIND_UTF8;
  type.value.value.bytes = amqp_cstring_bytes("quorum");
  const amqp_table_t arguments{1, &type};
  const amqp_queue_declare_ok_t* declared = amqp_queue_declare(
      connection, kChannel, amqp_cstring_bytes(queue.c_str()),
      /*passive=*/0, /*durable=*/1, /*exclusive=*/0, /*auto_delete=*/0, arguments);
  CheckReply(connection, "queue.declare");
  amqp_queue_bind(connection, kChannel, amqp_cstring_bytes(queue.c_str()),
                  amqp_cstring_bytes("amq.direct"), amqp_cstring_bytes(queue.c_str()),
                  amqp_empty_table);
  CheckReply(connection, "queue.bind");
  return declared->message_count;
}

std::string Summary(const std::string& fields, int64_t msgs, absl::Duration elapsed) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  return absl::StrFormat("{%s,\"msgs\":%d,\"seconds\":%.3f,\"msgs_per_sec\":%.1f}", fields, msgs,
                         seconds, seconds > 0 ? static_cast<double>(msgs) / seconds : 0.0);
}

int Publish(const std::string& queue) {
  const int size = absl::GetFlag(FLAGS_size);
  const int window = absl::GetFlag(FLAGS_window);
  const int64_t target = absl::GetFlag(FLAGS_messages);
  if (window < 1) Fail("--window must be at least 1");
  amqp_connection_state_t connection = Connect();
  DeclareQueue(connection, queue);
  amqp_confirm_select(connection, kChannel);
  CheckReply(connection, "confirm.select");

  const std::string payload(size, 'x');
  const amqp_bytes_t exchange = amqp_cstring_bytes("amq.direct");
  const amqp_bytes_t routing_key = amqp_cstring_bytes(queue.c_str());
  std::set<uint64_t> unconfirmed;  // Delivery tags.
  uint64_t published = 0;
  int64_t confirmed = 0, nacked = 0, confirmed_in_time = 0;
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(absl::GetFlag(FLAGS_duration));
  absl::Time stopped = absl::InfiniteFuture();
  auto done_publishing = [&] {
    if (target > 0) return static_cast<int64_t>(published) >= target;
    if (stopped == absl::InfiniteFuture() && absl::Now() >= end) {
      stopped = absl::Now();
      confirmed_in_time = confirmed;
    }
    return stopped != absl::InfiniteFuture();
  };
  for (;;) {
    while (unconfirmed.size() < static_cast<size_t>(window) && !done_publishing()) {
      amqp_basic_properties_t properties;
      properties._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
      properties.delivery_mode = AMQP_DELIVERY_PERSISTENT;
      const std::string id = absl::StrCat(published + 1);
      properties.message_id = amqp_cstring_bytes(id.c_str());
      const int status = amqp_basic_publish(
          connection, kChannel, exchange, routing_key, /*mandatory=*/0, /*immediate=*/0,
          &properties, amqp_bytes_t{payload.size(), const_cast<char*>(payload.data())});
      if (status != AMQP_STATUS_OK) {
        Fail(absl::StrCat("basic.publish: ", amqp_error_string2(status)));
      }
      unconfirmed.insert(++published);
    }
    if (unconfirmed.empty() && done_publishing()) break;
    amqp_maybe_release_buffers(connection);
    amqp_frame_t frame;
    struct timeval timeout = absl::ToTimeval(absl::Seconds(30));
    if (int status = amqp_simple_wait_frame_noblock(connection, &frame, &timeout);
        status != AMQP_STATUS_OK) {
      Fail(absl::StrCat("waiting for confirms: ", amqp_error_string2(status)));
    }
    if (frame.frame_type != AMQP_FRAME_METHOD) continue;
    uint64_t tag = 0;
    bool multiple = false, ack = true;
    switch (frame.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        const auto* method = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
        tag = method->delivery_tag;
        multiple = method->multiple != 0;
        break;
      }
      case AMQP_BASIC_NACK_METHOD: {
        const auto* method = static_cast<const amqp_basic_nack_t*>(frame.payload.method.decoded);
        tag = method->delivery_tag;
        multiple = method->multiple != 0;
        ack = false;
        break;
      }
      case AMQP_CHANNEL_CLOSE_METHOD:
      case AMQP_CONNECTION_CLOSE_METHOD:
        Fail("the broker closed the channel while publishing");
      default:
        continue;
    }
    const auto last = multiple ? unconfirmed.upper_bound(tag) : unconfirmed.find(tag);
    const auto first = multiple ? unconfirmed.begin() : last;
    const int64_t count =
        multiple ? std::distance(first, last) : static_cast<int64_t>(last != unconfirmed.end());
    if (multiple) {
      unconfirmed.erase(first, last);
    } else if (last != unconfirmed.end()) {
      unconfirmed.erase(last);
    }
    (ack ? confirmed : nacked) += count;
  }
  const bool timed = target == 0;
  const absl::Duration elapsed = (timed ? stopped : absl::Now()) - start;
  Close(connection);
  std::cout << Summary(absl::StrFormat("\"mode\":\"publish\",\"window\":%d,\"size\":%d,"
                                       "\"published\":%d,\"nacked\":%d",
                                       window, size, published, nacked),
                       timed ? confirmed_in_time : confirmed, elapsed)
            << std::endl;
  return nacked == 0 ? 0 : 1;
}

int Consume(const std::string& queue) {
  const int prefetch = absl::GetFlag(FLAGS_prefetch);
  const int64_t target = absl::GetFlag(FLAGS_messages);
  if (prefetch < 1 || prefetch > 65535) Fail("--prefetch must be 1 to 65535");
  if (target < 1) Fail("consume needs --messages");
  amqp_connection_state_t connection = Connect();
  const uint32_t ready = DeclareQueue(connection, queue);
  amqp_basic_qos(connection, kChannel, /*prefetch_size=*/0, static_cast<uint16_t>(prefetch),
                 /*global=*/0);
  CheckReply(connection, "basic.qos");
  const absl::Time start = absl::Now();
  const absl::Time give_up = start + absl::Seconds(absl::GetFlag(FLAGS_duration));
  amqp_basic_consume(connection, kChannel, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes,
                     /*no_local=*/0, /*no_ack=*/0, /*exclusive=*/0, amqp_empty_table);
  CheckReply(connection, "basic.consume");
  int64_t acked = 0;
  while (acked < target && absl::Now() < give_up) {
    amqp_maybe_release_buffers(connection);
    amqp_envelope_t envelope;
    struct timeval timeout = absl::ToTimeval(absl::Seconds(1));
    const amqp_rpc_reply_t reply = amqp_consume_message(connection, &envelope, &timeout, 0);
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        reply.library_error == AMQP_STATUS_TIMEOUT) {
      continue;
    }
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) Fail("consume: no delivery");
    const int status = amqp_basic_ack(connection, kChannel, envelope.delivery_tag, /*multiple=*/0);
    amqp_destroy_envelope(&envelope);
    if (status != AMQP_STATUS_OK) Fail(absl::StrCat("basic.ack: ", amqp_error_string2(status)));
    ++acked;
  }
  const absl::Duration elapsed = absl::Now() - start;
  Close(connection);
  std::cout << Summary(absl::StrFormat("\"mode\":\"consume\",\"prefetch\":%d,\"ready\":%d",
                                       prefetch, ready),
                       acked, elapsed)
            << std::endl;
  return acked == target ? 0 : 1;
}

int Remove(const std::string& queue, bool purge) {
  amqp_connection_state_t connection = Connect();
  if (purge) {
    amqp_queue_purge(connection, kChannel, amqp_cstring_bytes(queue.c_str()));
    CheckReply(connection, "queue.purge");
  } else {
    amqp_queue_delete(connection, kChannel, amqp_cstring_bytes(queue.c_str()), /*if_unused=*/0,
                      /*if_empty=*/0);
    CheckReply(connection, "queue.delete");
  }
  Close(connection);
  return 0;
}

}  // namespace
}  // namespace switchboard::amqp_perf

int main(int argc, char** argv) {
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string queue = absl::GetFlag(FLAGS_queue);
  if (args.size() != 2 || queue.empty()) {
    std::cerr << "usage: amqp_perf publish|consume|purge|delete --queue=Q [flags]" << std::endl;
    return 2;
  }
  const std::string mode = args[1];
  using namespace switchboard::amqp_perf;
  if (mode == "publish") return Publish(queue);
  if (mode == "consume") return Consume(queue);
  if (mode == "purge" || mode == "delete") return Remove(queue, mode == "purge");
  std::cerr << "amqp_perf: unknown mode " << mode << std::endl;
  return 2;
}

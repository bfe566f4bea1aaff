// Topology of the AMQP backend as plain values: the exchanges, queues and
// bindings a caller asks AmqpConnection to declare.
//
// AmqpConnection remembers every declaration that succeeded and replays them,
// in the order they were first made, on every reconnect: RabbitMQ 3.10 may
// lose a binding or a quorum queue's registration when it is killed soon
// after a declare (tests/testing/rabbitmq_server.h, SyncMetadata()), and an
// exclusive queue dies with its connection. Equal declarations are
// remembered once. Values only: copy them anywhere, on any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>

namespace switchboard::broker::amqp {

// exchange.declare.
struct ExchangeDeclaration {
  std::string name;
  std::string type = "topic";  // direct, fanout, topic or headers.
  bool durable = true;
  bool auto_delete = false;
};

// queue.declare of a named queue (server-named queues are not supported:
// their name changes on every reconnect).
struct QueueDeclaration {
  using Argument = std::variant<std::string, int64_t>;

  // A durable quorum queue (`x-queue-type: quorum`), the queue of a durable
  // topic's consumer group: its x-delivery-count is the delivery attempt.
  static QueueDeclaration Quorum(std::string name);

  std::string name;
  bool durable = true;
  bool exclusive = false;
  bool auto_delete = false;
  // x-arguments: strings are sent as long strings, integers as 64-bit.
  std::map<std::string, Argument> arguments;
};

// queue.bind of `queue` to `exchange` with `binding_key` (a topic pattern
// on a topic exchange).
struct BindingDeclaration {
  std::string queue;
  std::string exchange;
  std::string binding_key;
};

using Declaration = std::variant<ExchangeDeclaration, QueueDeclaration, BindingDeclaration>;

bool operator==(const ExchangeDeclaration& a, const ExchangeDeclaration& b);
bool operator==(const QueueDeclaration& a, const QueueDeclaration& b);
bool operator==(const BindingDeclaration& a, const BindingDeclaration& b);

// The AMQP method and its names, for error messages and logs:
// "queue.declare 'orders.billing'".
std::string Describe(const Declaration& declaration);

}  // namespace switchboard::broker::amqp

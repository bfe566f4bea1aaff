// Conversion of broker messages into their wire form.
#pragma once

#include "server/broker/broker.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::service {

// Moves `message` into `out`.
void ToReceivedMessage(broker::Message&& message, v1::ReceivedMessage& out);

}  // namespace switchboard::service

// Reading the one handshake message (HELLO or WELCOME) off a fresh link,
// with a deadline. Bytes that arrive after it stay in the parser for the
// session to consume.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "proto/frame.h"
#include "proto/messages.h"
#include "wan/link.h"

namespace tideway::wan {

using HandshakeCallback =
    std::function<void(const std::string& error, proto::FrameParser parser, proto::Message msg)>;

// Reads frames until one complete frame on the control stream arrives and
// decodes it. Calls back exactly once: error non-empty on failure.
void read_handshake_message(std::shared_ptr<Link> link, HandshakeCallback cb);

std::string session_hex(const proto::SessionId& id);

}  // namespace tideway::wan

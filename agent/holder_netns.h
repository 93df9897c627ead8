// Creating a socket inside another network namespace without moving the
// process: the calling thread enters the namespace (setns), creates the
// socket, and returns. A socket stays bound to the namespace it was created
// in, so it can then be used from any thread.
#pragma once

#include <string>

#include "proto/result.h"

namespace tideway::agent {

// "/run/netns/NAME" for a bare name, the argument itself for a path.
std::string netns_path(const std::string& name_or_path);

// socket(domain, type, protocol) inside the namespace at `netns` ("" = the
// caller's own). Returns the fd (the caller owns it). If the thread cannot
// return to its namespace the process aborts: continuing would run the rest
// of the thread in the wrong namespace.
proto::Result<int> socket_in_netns(const std::string& netns, int domain, int type, int protocol);

}  // namespace tideway::agent

// Configuration of one channel endpoint (a site's end of the WAN channel).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "proto/messages.h"
#include "wan/clock.h"
#include "wan/stream_config.h"

namespace tideway::wan {

using namespace std::chrono_literals;

struct TlsOptions {
  // Plaintext exists only so tests can look at the protocol; a production
  // config refuses it (see tls.cpp).
  bool plaintext_for_tests = false;
  std::string ca_file;    // PEM: the CA that signs every site's certificate
  std::string cert_file;  // PEM: our certificate chain
  std::string key_file;   // PEM: our private key
  // Certificate common names we accept as peers; empty: any cert of the CA.
  std::vector<std::string> allowed_peers;
};

struct ChannelOptions {
  std::string site = "site";  // our name, sent in HELLO/WELCOME
  TlsOptions tls;
  std::vector<StreamConfig> streams;  // both ends must declare the same ids

  Nanos heartbeat_interval = 500ms;
  Nanos dead_peer_timeout = 3s;   // no bytes for this long: the link is dead
  Nanos handshake_timeout = 5s;   // TLS + HELLO/WELCOME must finish within
  Nanos reconnect_min = 50ms;     // first retry; doubles up to reconnect_max
  Nanos reconnect_max = 2s;
  Nanos session_linger = 120s;    // server keeps a detached session this long
  Nanos ack_delay = 2ms;          // cumulative stream acks are batched this long
  uint64_t ack_bytes = 1u << 20;  // ... or until this many bytes arrived

  uint64_t link_rate_bytes_per_sec = 0;  // 0 = unlimited
  uint64_t link_burst_bytes = 64 * 1024;  // raised to 2 ms at the rate if smaller
  uint32_t max_frame_payload = 32 * 1024;  // larger messages are fragmented
  size_t write_batch_bytes = 64 * 1024;    // bytes handed to the socket at once
  // Unsent bytes the kernel may hold: tcp_notsent_lowat_time of the
  // connection's pacing rate (re-read every 50 ms), at least
  // tcp_notsent_lowat and at most tcp_notsent_lowat_max; 0 = no bound
  // (see Link::adapt_notsent_lowat for why a fixed small value is wrong).
  int tcp_notsent_lowat = 128 * 1024;
  int tcp_notsent_lowat_max = 4 << 20;
  Nanos tcp_notsent_lowat_time = 4ms;

  uint64_t features = proto::kAllFeatures;
  uint64_t required_features = proto::kFeatResume;

  Clock* clock = &system_clock();
};

}  // namespace tideway::wan

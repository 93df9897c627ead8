#include "agent/replication_link.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "wan/repl_streams.h"

namespace tideway::agent {

namespace asio = boost::asio;

const char* attach_state_name(AttachState s) {
  switch (s) {
    case AttachState::kAttaching: return "attaching";
    case AttachState::kAttached: return "attached";
    case AttachState::kRefused: return "refused";
  }
  return "?";
}

std::shared_ptr<ReplicationLink> ReplicationLink::create(asio::io_context& io, wan::ChannelOptions opts,
                                                         std::string host, uint16_t port) {
  opts.streams = wan::replication_streams();
  auto client = wan::ChannelClient::create(io, opts, std::move(host), port);
  auto link = std::shared_ptr<ReplicationLink>(new ReplicationLink(io, std::move(client)));
  std::weak_ptr<ReplicationLink> weak = link;
  const auto& s = link->client_->session();
  s->on_message(wan::kReplControlStream, [weak](proto::MessageType t, std::span<const uint8_t> p) {
    if (auto l = weak.lock()) l->on_message(t, p);
  });
  s->on_writable(wan::kReplDataStream, [weak] {
    if (auto l = weak.lock()) {
      l->blocked_ = false;
      l->pump();
    }
  });
  s->on_state([weak](wan::SessionState st) {
    if (auto l = weak.lock()) l->on_state(st);
  });
  return link;
}

void ReplicationLink::start() { client_->start(); }

void ReplicationLink::stop() { client_->stop(); }

void ReplicationLink::add(std::shared_ptr<WriteLog> log, std::vector<LinkVolume> volumes, CommitHandler on_commit) {
  const uint32_t id = log->writer();
  Writer& w = writers_[id];
  w.log = std::move(log);
  w.volumes = std::move(volumes);
  w.on_commit = std::move(on_commit);
  w.next_send = w.log->committed() + 1;
  std::weak_ptr<ReplicationLink> weak = weak_from_this();
  w.log->on_issue([weak] {
    if (auto l = weak.lock()) l->wake();
  });
  attach(w);
  pump();
}

void ReplicationLink::remove(uint32_t writer) {
  auto it = writers_.find(writer);
  if (it == writers_.end()) return;
  it->second.log->on_issue(nullptr);
  writers_.erase(it);
}

void ReplicationLink::wake() {
  if (wake_posted_.exchange(true)) return;
  asio::post(io_, [weak = weak_from_this()] {
    if (auto l = weak.lock()) {
      l->wake_posted_ = false;
      l->pump();
    }
  });
}

void ReplicationLink::attach(Writer& w) {
  w.refusal.clear();
  for (const auto& v : w.volumes) {
    w.attached[v.volume] = AttachState::kAttaching;
    // Queued even while disconnected: the session sends it on connect.
    client_->session()->send(wan::kReplDataStream, proto::ReplAttach{w.log->writer(), v.volume, v.size, v.name});
  }
}

void ReplicationLink::pump() {
  const auto& s = client_->session();
  if (blocked_ || s->state() == wan::SessionState::kClosed) return;
  for (auto& [id, w] : writers_) {
    if (!w.refusal.empty()) continue;
    while (auto rw = w.log->next(w.next_send)) {
      proto::ReplWrite m;
      m.writer = id;
      m.volume = rw->volume;
      m.seq = rw->seq;
      m.op = rw->op;
      m.flags = rw->flags;
      m.offset = rw->offset;
      m.length = rw->length;
      m.data = rw->data;
      if (!s->send(wan::kReplDataStream, m)) {
        blocked_ = true;  // on_writable resumes
        return;
      }
      w.next_send = rw->seq + 1;
      ++w.sent_writes;
      w.sent_bytes += rw->length;
    }
  }
}

void ReplicationLink::on_message(proto::MessageType type, std::span<const uint8_t> payload) {
  auto m = proto::decode_payload(type, payload);
  if (!m) {
    spdlog::error("replication: undecodable {} from the backup: {}", proto::type_name(type), m.error().detail);
    return;
  }
  if (auto* ack = std::get_if<proto::ReplAck>(&m.value())) {
    auto it = writers_.find(ack->writer);
    if (it == writers_.end()) return;  // removed meanwhile
    Writer& w = it->second;
    const uint64_t before = w.log->committed();
    const uint64_t committed = w.log->ack_through(ack->seq);
    if (committed > before && w.on_commit) w.on_commit(ack->writer, committed);
  } else if (auto* at = std::get_if<proto::ReplAttached>(&m.value())) {
    auto it = writers_.find(at->writer);
    if (it == writers_.end()) return;
    Writer& w = it->second;
    if (at->status == proto::AttachStatus::kRefused) {
      w.attached[at->volume] = AttachState::kRefused;
      w.refusal = at->reason;
      spdlog::error("replication: the backup refused volume {} of writer {}: {}", at->volume, at->writer, at->reason);
      return;
    }
    w.attached[at->volume] = AttachState::kAttached;
    // What the backup already holds counts as acked (after a reset, the
    // journal may be ahead of the acks we saw).
    const uint64_t before = w.log->committed();
    const uint64_t committed = w.log->ack_through(at->durable_seq);
    if (committed > before && w.on_commit) w.on_commit(at->writer, committed);
    if (at->durable_seq > w.log->pending())
      spdlog::info("replication: backup holds writer {} through seq {} from an earlier run (ours start at {})",
                   at->writer, at->durable_seq, w.log->pending() + 1);
  } else {
    spdlog::warn("replication: unexpected {} from the backup", proto::type_name(type));
  }
}

void ReplicationLink::on_state(wan::SessionState st) {
  if (st != wan::SessionState::kReset) return;
  // The replicator lost our session: everything unacked must go again,
  // after a fresh attach (it may have restarted from its journal).
  spdlog::warn("replication: backup session reset; re-attaching and re-sending unacked writes");
  blocked_ = false;
  for (auto& [id, w] : writers_) {
    w.next_send = w.log->committed() + 1;
    attach(w);
  }
  pump();
}

AttachState ReplicationLink::attach_state(uint32_t writer) const {
  auto it = writers_.find(writer);
  if (it == writers_.end()) return AttachState::kAttaching;
  AttachState worst = AttachState::kAttached;
  for (auto& [v, st] : it->second.attached) {
    if (st == AttachState::kRefused) return st;
    if (st == AttachState::kAttaching) worst = st;
  }
  return worst;
}

std::string ReplicationLink::refusal(uint32_t writer) const {
  auto it = writers_.find(writer);
  return it == writers_.end() ? std::string() : it->second.refusal;
}

nlohmann::json ReplicationLink::status() const {
  const auto st = client_->session()->stats();
  return {{"state", wan::state_name(st.state)},
          {"links", st.links},
          {"rtt_ms", std::chrono::duration<double, std::milli>(st.rtt).count()},
          {"bytes_sent", st.bytes_sent},
          {"frames_resent", st.frames_resent},
          {"last_error", st.last_error}};
}

}  // namespace tideway::agent

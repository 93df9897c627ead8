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
                                                         std::string host, uint16_t port,
                                                         ReplicationLinkOptions link_opts) {
  opts.streams = wan::replication_streams();
  if (link_opts.data_retention_bytes != 0)
    for (auto& st : opts.streams)
      if (st.id == wan::kReplDataStream) st.max_retained_bytes = link_opts.data_retention_bytes;
  // A codec we will not use is not offered: the backup then sees it off too.
  if (!link_opts.codec.enabled) opts.features &= ~uint64_t{proto::kFeatCodec};
  auto client = wan::ChannelClient::create(io, opts, std::move(host), port);
  auto link = std::shared_ptr<ReplicationLink>(new ReplicationLink(io, std::move(client), std::move(link_opts)));
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
  if (opts_.codec.enabled) {
    auto e = WriteEncoder::create(opts_.codec.config);
    if (e)
      w.encoder = std::move(e).value();
    else  // the agent's config was validated: only a bug gets here
      spdlog::error("replication: writer {}: codec off: {}", id, e.error().detail);
  }
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
  // The replicator resets its decoder on each ATTACH, and nothing encoded
  // before it may follow it: a held batch belongs to the old epoch.
  w.held.clear();
  w.held_seq = 0;
  if (w.encoder) w.encoder->reset();
  for (const auto& v : w.volumes) w.attached[v.volume] = AttachState::kAttaching;
  w.attach_next = 0;
  send_attaches(w);
}

bool ReplicationLink::send_attaches(Writer& w) {
  // Queued even while disconnected: the session sends them on connect. A
  // full stream keeps the rest for pump(): no write may overtake them.
  for (; w.attach_next < w.volumes.size(); ++w.attach_next) {
    const auto& v = w.volumes[w.attach_next];
    if (!client_->session()->send(wan::kReplDataStream, proto::ReplAttach{w.log->writer(), v.volume, v.size, v.name}))
      return false;
  }
  return true;
}

void ReplicationLink::restart(Writer& w) {
  w.next_send = w.log->committed() + 1;
  attach(w);
}

void ReplicationLink::sent(Writer& w, uint64_t seq, uint32_t length) {
  w.next_send = seq + 1;
  ++w.sent_writes;
  w.sent_bytes += length;
}

bool ReplicationLink::send_write(uint32_t id, Writer& w, const RetainedWrite& rw) {
  const auto& s = client_->session();
  proto::ReplWrite m;
  m.writer = id;
  m.volume = rw.volume;
  m.seq = rw.seq;
  m.op = rw.op;
  m.flags = rw.flags;
  m.offset = rw.offset;
  m.length = rw.length;
  m.data = rw.data;
  const bool codec = w.encoder && (s->features() & proto::kFeatCodec) != 0;
  if (codec && proto::repl_encodable(rw.op, rw.volume, rw.offset, rw.length)) {
    if (auto r = w.encoder->encode(rw, w.batch); r) {
      if (batch_hook_) batch_hook_(id, rw.seq, w.batch);
      m.flags |= proto::kWriteEncoded;
      m.data = w.batch;
      auto payload = proto::encode_payload(m);
      if (s->send(wan::kReplDataStream, proto::MessageType::kReplWrite, payload)) return true;
      // The encoder's state already includes this batch: keep it.
      w.held = std::move(payload);
      w.held_seq = rw.seq;
      w.encoder->count_held();
      return false;
    } else {
      spdlog::error("replication: writer {} seq {}: cannot encode ({}); sending it raw", id, rw.seq,
                    r.error().detail);
    }
  }
  if (!s->send(wan::kReplDataStream, m)) return false;
  if (w.encoder) w.encoder->count_raw(rw.op, rw.length);
  return true;
}

void ReplicationLink::pump() {
  const auto& s = client_->session();
  if (blocked_ || s->state() == wan::SessionState::kClosed) return;
  // Before the first handshake we do not know whether the backup speaks
  // the codec: writes wait in the log (not raw in the outbox) until then.
  const bool undecided = opts_.codec.enabled && s->features() == 0;
  for (auto& [id, w] : writers_) {
    if (!w.refusal.empty()) continue;
    if (!send_attaches(w)) {
      blocked_ = true;
      return;
    }
    if (w.held_seq != 0) {
      if (!s->send(wan::kReplDataStream, proto::MessageType::kReplWrite, w.held)) {
        blocked_ = true;  // on_writable resumes
        return;
      }
      sent(w, w.held_seq, w.held_length);
      w.held.clear();
      w.held_seq = 0;
    }
    if (undecided) continue;
    while (auto rw = w.log->next(w.next_send)) {
      if (!send_write(id, w, *rw)) {
        // A held batch stands for this write now: it goes first next time,
        // and the writes after it follow.
        if (w.held_seq != 0) {
          w.held_length = rw->length;
          w.next_send = rw->seq + 1;
        }
        blocked_ = true;  // on_writable resumes
        return;
      }
      sent(w, rw->seq, rw->length);
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
    if (at->status == proto::AttachStatus::kReattach) {
      // The backup dropped a write it could not decode and everything after
      // it: start over above what it holds, with a fresh codec epoch.
      ++w.reattach_requests;
      spdlog::warn("replication: backup asks writer {} to re-attach and re-send from seq {}: {}", at->writer,
                   at->durable_seq + 1, at->reason);
      const uint64_t before = w.log->committed();
      const uint64_t committed = w.log->ack_through(at->durable_seq);
      if (committed > before && w.on_commit) w.on_commit(at->writer, committed);
      restart(w);
      pump();
      return;
    }
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
  if (st == wan::SessionState::kConnected) pump();  // the first link decides the codec
  if (st != wan::SessionState::kReset) return;
  // The replicator lost our session: everything unacked must go again,
  // after a fresh attach (it may have restarted from its journal).
  spdlog::warn("replication: backup session reset; re-attaching and re-sending unacked writes");
  blocked_ = false;
  for (auto& [id, w] : writers_) restart(w);
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
          {"codec", (client_->session()->features() & proto::kFeatCodec) != 0},
          {"last_error", st.last_error}};
}

nlohmann::json ReplicationLink::codec_status(uint32_t writer) const {
  auto it = writers_.find(writer);
  if (it == writers_.end() || !it->second.encoder) return nullptr;
  nlohmann::json j = it->second.encoder->status();
  j["reattach_requests"] = it->second.reattach_requests;
  return j;
}

}  // namespace tideway::agent

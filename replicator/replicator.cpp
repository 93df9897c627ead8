#include "replicator/replicator.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "wan/repl_streams.h"

namespace tideway::replicator {

namespace asio = boost::asio;
using proto::Errc;
using proto::Error;

proto::Result<std::unique_ptr<Replicator>> Replicator::open(asio::io_context& io, ReplicatorOptions opts) {
  if (opts.data_dir.empty()) return Error{Errc::kInvalid, "replicator: data_dir is not set"};
  if (::mkdir(opts.data_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Error{Errc::kSystem, "mkdir " + opts.data_dir + ": " + std::strerror(errno)};
  opts.channel.streams = wan::replication_streams();
  if (opts.codec_max_memory_bytes == 0) opts.channel.features &= ~uint64_t{proto::kFeatCodec};
  std::unique_ptr<Replicator> r(new Replicator(io, opts));
  auto journal = Journal::open({opts.data_dir + "/journal", opts.segment_bytes});
  if (!journal) return journal.error();
  r->journal_ = std::move(journal).value();
  auto volumes = VolumeRegistry::open(opts.data_dir + "/volumes");
  if (!volumes) return volumes.error();
  r->volumes_ = std::move(volumes).value();
  const std::string cp_path = opts.data_dir + "/applied.json";
  auto cp = load_checkpoint(cp_path);
  if (!cp) return cp.error();

  const auto& rec = r->journal_->recovery();
  spdlog::info("journal recovered: {} segments, {} records, {} bytes{}", rec.segments, rec.records, rec.bytes,
               rec.torn_bytes ? fmt::format(", torn tail of {} bytes dropped", rec.torn_bytes) : "");
  // What each writer has durably here: the journal, or (when trimmed) the checkpoint.
  for (auto& [w, seq] : cp->applied_seq) r->writers_[w].durable = seq;
  for (auto& [w, seq] : rec.last_seq) r->writers_[w].durable = std::max(r->writers_[w].durable, seq);
  for (auto& [w, st] : r->writers_) st.received = st.durable;

  r->applier_ = std::make_unique<Applier>(*r->journal_, *r->volumes_,
                                          ApplierOptions{cp_path, 64ull << 20, opts.apply_sync_interval}, *cp);
  Replicator* self = r.get();
  std::weak_ptr<bool> alive = r->alive_;
  r->commit_ = std::make_unique<GroupCommit>(*r->journal_, opts.max_pending_bytes, [self, alive](const DurableBatch& b) {
    self->applier_->durable_to(b.end);
    asio::post(self->io_, [self, alive, b] {
      if (alive.lock()) self->on_durable(b);
    });
  });
  try {
    r->server_ = wan::ChannelServer::create(io, opts.channel, opts.listen);
  } catch (const std::exception& e) {
    return Error{Errc::kSystem, std::string("replicator: cannot listen: ") + e.what()};
  }
  r->server_->on_session([self](const std::shared_ptr<wan::Session>& s) { self->on_session(s); });
  return r;
}

Replicator::~Replicator() { stop(); }

void Replicator::start() { server_->start(); }

void Replicator::stop() {
  *alive_ = false;
  if (server_) server_->stop();
  if (commit_) commit_->stop();
  if (promote_thread_.joinable()) promote_thread_.join();
  if (applier_) applier_->stop();
}

void Replicator::on_session(const std::shared_ptr<wan::Session>& s) {
  std::weak_ptr<wan::Session> weak = s;
  s->on_message(wan::kReplDataStream, [this, weak](proto::MessageType type, std::span<const uint8_t> payload) {
    auto sp = weak.lock();
    if (!sp) return;
    auto m = proto::decode_payload(type, payload);
    if (!m) {
      // The channel already checked framing and CRC: this is a peer bug.
      spdlog::error("replicator: undecodable {} from {}: {}", proto::type_name(type), sp->peer_site(),
                    m.error().detail);
      return;
    }
    if (auto* w = std::get_if<proto::ReplWrite>(&m.value())) {
      on_write(sp, *w);
    } else if (auto* a = std::get_if<proto::ReplAttach>(&m.value())) {
      on_attach(sp, *a);
    } else {
      spdlog::warn("replicator: unexpected {} from {}", proto::type_name(type), sp->peer_site());
    }
  });
}

void Replicator::send_control(const std::shared_ptr<wan::Session>& s, const proto::Message& m) {
  // The control stream carries only small messages, 64 MiB of retention is
  // never reached unless the agent stopped reading altogether.
  if (!s->send(wan::kReplControlStream, m))
    spdlog::warn("replicator: control stream to {} full, dropping {}", s->peer_site(),
                 proto::type_name(proto::message_type(m)));
}

void Replicator::on_attach(const std::shared_ptr<wan::Session>& s, const proto::ReplAttach& a) {
  proto::ReplAttached reply{a.writer, a.volume, proto::AttachStatus::kOk, 0, ""};
  Writer& w = writers_[a.writer];
  if (w.promoted) {
    reply.status = proto::AttachStatus::kRefused;
    reply.reason = "\"" + a.name + "\" was promoted at the backup site; protection must start over";
  } else if (auto v = volumes_->attach(a); !v) {
    reply.status = proto::AttachStatus::kRefused;
    reply.reason = v.error().detail;
  }
  if (reply.status == proto::AttachStatus::kOk) {
    w.session = s;
    w.peer = s->peer_site();
    // The agent resets its encoder whenever it attaches, and its writes
    // follow the ATTACH in order: a new stream starts here.
    w.resync = false;
    w.decoder.reset();
    reply.durable_seq = w.durable;
    spdlog::info("replicator: {} attached \"{}\" (writer {} volume {}), durable through seq {}", s->peer_site(),
                 a.name, a.writer, a.volume, w.durable);
  } else {
    spdlog::warn("replicator: refused \"{}\" from {}: {}", a.name, s->peer_site(), reply.reason);
  }
  send_control(s, reply);
}

void Replicator::on_write(const std::shared_ptr<wan::Session>& s, const proto::ReplWrite& m) {
  auto it = writers_.find(m.writer);
  if (it == writers_.end()) {
    spdlog::error("replicator: write for unattached writer {} volume {} from {}: dropped", m.writer, m.volume,
                  s->peer_site());
    return;
  }
  Writer& w = it->second;
  if (w.promoted) return;  // intake stopped: nothing more is journaled or acked
  // Only the session whose ATTACH was accepted writes for this writer: an
  // agent that was refused (its writes follow its ATTACH before it learns
  // of the refusal) must not write into another agent's volume.
  if (w.session.lock() != s) {
    spdlog::error("replicator: write seq {} of writer {} from {} which has no accepted attach: dropped", m.seq,
                  m.writer, s->peer_site());
    return;
  }
  if (w.resync) {
    ++w.resync_dropped;  // the agent re-sends it after its re-attach
    return;
  }
  proto::ReplWrite journaled = m;
  if (m.flags & proto::kWriteEncoded) {
    // Every batch of the stream is decoded, duplicates too: the decoder's
    // state must follow the agent's encoder batch by batch.
    if (!(s->features() & proto::kFeatCodec)) return on_decode_failure(s, w, m, "codec batch without kFeatCodec");
    const uint64_t others = codec_memory() - w.decoder.memory_bytes();
    const uint64_t max = opts_.codec_max_memory_bytes;
    auto bytes = w.decoder.decode(m, max > others ? max - others : 0);
    if (!bytes) return on_decode_failure(s, w, m, bytes.error().detail);
    journaled.flags &= ~uint32_t{proto::kWriteEncoded};
    journaled.data = bytes.value();
  }
  if (!volumes_->find(m.writer, m.volume)) {
    spdlog::error("replicator: write for unattached writer {} volume {} from {}: dropped", m.writer, m.volume,
                  s->peer_site());
    return;
  }
  if (m.seq <= w.received) {
    // A re-send after a reset: already journaled (and acked when durable).
    ++w.duplicates;
    if (m.seq <= w.durable) send_control(s, proto::ReplAck{m.writer, 0, w.durable});
    return;
  }
  if (!commit_->submit(journaled)) {
    spdlog::error("replicator: journal unavailable, write seq {} of writer {} not accepted", m.seq, m.writer);
    return;
  }
  w.received = m.seq;
  ++w.writes;
  w.bytes += m.length;
}

void Replicator::on_decode_failure(const std::shared_ptr<wan::Session>& s, Writer& w, const proto::ReplWrite& m,
                                   const std::string& why) {
  // Nothing of this write is journaled, nor anything after it in this
  // session (it would leave a hole): drop until the agent attaches again.
  w.resync = true;
  proto::ReplAttached reply{m.writer, m.volume, proto::AttachStatus::kReattach, w.durable, why};
  if (w.decoder.last_error() == WriteDecodeError::kOverBudget) {
    reply.status = proto::AttachStatus::kRefused;
    spdlog::error("replicator: refusing writer {} from {}: {}", m.writer, s->peer_site(), why);
  } else {
    ++w.reattach_requests;
    spdlog::error("replicator: write seq {} of writer {} from {} not journaled: {}; asking it to re-attach and "
                  "re-send from seq {}",
                  m.seq, m.writer, s->peer_site(), why, w.durable + 1);
  }
  if (reply.reason.size() > proto::kMaxReasonLen) reply.reason.resize(proto::kMaxReasonLen);
  send_control(s, reply);
}

uint64_t Replicator::codec_memory() const {
  uint64_t sum = 0;
  for (const auto& [id, w] : writers_) sum += w.decoder.memory_bytes();
  return sum;
}

void Replicator::on_durable(const DurableBatch& b) {
  for (auto& [writer, seq] : b.last_seq) {
    Writer& w = writers_[writer];
    w.durable = std::max(w.durable, seq);
    if (auto s = w.session.lock()) send_control(s, proto::ReplAck{writer, 0, w.durable});
  }
}

nlohmann::json Replicator::status() const {
  nlohmann::json j;
  const auto ap = applier_->stats();
  const auto gc = commit_->stats();
  j["journal"] = {{"segments", journal_->segment_count()},
                  {"bytes", journal_->disk_bytes()},
                  {"batches", gc.batches},
                  {"records", gc.records},
                  {"pending_bytes", gc.pending_bytes},
                  {"last_sync_ms", gc.last_sync_ms},
                  {"error", gc.error}};
  j["applier"] = {{"records", ap.records},
                  {"bytes", ap.bytes},
                  {"applied", {ap.applied.segment, ap.applied.offset}},
                  {"durable", {ap.target.segment, ap.target.offset}},
                  {"error", ap.error}};
  j["codec"] = {{"max_memory_bytes", opts_.codec_max_memory_bytes}, {"memory_bytes", codec_memory()}};
  j["volumes"] = nlohmann::json::array();
  for (BackupVolume* v : volumes_->all()) {
    nlohmann::json e{{"name", v->name}, {"writer", v->writer}, {"volume", v->volume}, {"size", v->size},
                     {"path", v->path}};
    if (auto it = writers_.find(v->writer); it != writers_.end()) {
      const Writer& w = it->second;
      auto as = ap.checkpoint.applied_seq.find(v->writer);
      e["durable_seq"] = w.durable;
      e["applied_seq"] = as == ap.checkpoint.applied_seq.end() ? 0 : as->second;
      e["writes"] = w.writes;
      e["bytes"] = w.bytes;
      e["duplicates"] = w.duplicates;
      e["promoted"] = w.promoted;
      e["peer"] = w.peer;
      e["codec"] = w.decoder.status();
      e["codec"]["resync_dropped"] = w.resync_dropped;
      e["codec"]["reattach_requests"] = w.reattach_requests;
      e["connected"] = !w.session.expired() && w.session.lock()->state() == wan::SessionState::kConnected;
    }
    j["volumes"].push_back(e);
  }
  return j;
}

void Replicator::promote(const std::string& name, std::function<void(nlohmann::json)> done) {
  BackupVolume* v = volumes_->find(name);
  if (!v) {
    done({{"ok", false}, {"error", "no backup volume named \"" + name + "\""}});
    return;
  }
  if (promoting_) {
    done({{"ok", false}, {"error", "a promotion is already running"}});
    return;
  }
  Writer& w = writers_[v->writer];
  w.promoted = true;  // intake stops now: later writes are dropped unacked
  const uint64_t durable = w.durable;
  spdlog::info("promote \"{}\": intake stopped at seq {}, applying the journal", name, durable);
  promoting_ = true;
  if (promote_thread_.joinable()) promote_thread_.join();
  std::weak_ptr<bool> alive = alive_;
  promote_thread_ = std::thread([this, alive, v, durable, done = std::move(done)] {
    // Everything handed to the journal before the stop must be durable and
    // applied; the group commit drains in order, so wait for it first.
    bool ok = commit_->flush() && applier_->drain();
    const auto st = applier_->stats();
    auto as = st.checkpoint.applied_seq.find(v->writer);
    nlohmann::json j{{"ok", ok},
                     {"name", v->name},
                     {"image", v->path},
                     {"size", v->size},
                     {"durable_seq", durable},
                     {"applied_seq", as == st.checkpoint.applied_seq.end() ? 0 : as->second}};
    if (!ok) j["error"] = st.error.empty() ? "applier stopped" : st.error;
    asio::post(io_, [this, alive, j, done] {
      if (!alive.lock()) return;
      promoting_ = false;
      done(j);
    });
  });
}

}  // namespace tideway::replicator

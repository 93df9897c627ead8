#include "agent/disk_copy_destination.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <cassert>
#include <cstring>

#include "wan/mig_streams.h"

namespace tideway::agent {

namespace asio = boost::asio;
using proto::WriteOp;

proto::Result<std::shared_ptr<DiskCopyDestination>> DiskCopyDestination::create(asio::io_context& io, Setup setup) {
  assert(setup.session && setup.on_error);
  auto d = wan::codec::Decoder::create(setup.codec);
  if (!d) return d.error();
  return std::shared_ptr<DiskCopyDestination>(new DiskCopyDestination(io, std::move(setup), std::move(d).value()));
}

DiskCopyDestination::DiskCopyDestination(asio::io_context& io, Setup setup, std::unique_ptr<wan::codec::Decoder> d)
    : io_(io), s_(std::move(setup)), decoder_(std::move(d)), dirty_(s_.disks.size(), false) {}

void DiskCopyDestination::on_message(proto::MessageType type, std::span<const uint8_t> payload) {
  if (stopped_) return;
  auto m = proto::decode_payload(type, payload);
  if (!m) return fail("undecodable disk message: " + m.error().detail);
  if (auto* w = std::get_if<proto::ReplWrite>(&*m)) {
    if (w->writer != s_.migration) return fail("a disk write of another migration");
    if (w->seq != applied_ + 1)
      return fail("disk write " + std::to_string(w->seq) + " after " + std::to_string(applied_));
    if (auto r = apply(*w); !r) return fail(r.error().detail);
    applied_ = w->seq;
    if (w->flags & proto::kWriteFua) schedule_ack();
  } else if (auto* f = std::get_if<proto::ReplFlush>(&*m)) {
    if (f->writer != s_.migration || f->seq != applied_)
      return fail("disk flush at " + std::to_string(f->seq) + ", applied " + std::to_string(applied_));
    force_ack_ = true;  // answered even when nothing is new (an empty copy)
    schedule_ack();
  } else {
    fail("unexpected message type on the disk stream");
  }
}

proto::Result<void> DiskCopyDestination::apply(const proto::ReplWrite& w) {
  using proto::Errc;
  if (w.volume >= s_.disks.size()) return proto::Error{Errc::kMalformed, "disk write to disk " + std::to_string(w.volume)};
  auto& disk = *s_.disks[w.volume];
  LocalVolume& v = disk.volume();
  if (!v.in_range(w.offset, w.length))
    return proto::Error{Errc::kMalformed, "disk write past the end of " + disk.path()};
  int e = 0;
  if (w.op == WriteOp::kWrite && (w.flags & proto::kWriteEncoded)) {
    auto recs = decoder_->decode(w.data);
    if (!recs) return proto::Error{Errc::kMalformed, "disk batch: " + recs.error().detail};
    if (recs->size() * proto::kPageSize != w.length)
      return proto::Error{Errc::kMalformed, "disk batch of " + std::to_string(recs->size()) + " pages for " +
                                                std::to_string(w.length) + " bytes"};
    for (size_t i = 0; i < recs->size() && e == 0; ++i) {
      const auto& r = (*recs)[i];
      if (r.address != proto::repl_page_address(w.volume, w.offset + i * proto::kPageSize))
        return proto::Error{Errc::kMalformed, "disk batch page at an address outside its write"};
      e = v.pwrite_all(w.offset + i * proto::kPageSize, r.page);
    }
  } else if (w.op == WriteOp::kWrite) {
    if (w.data.size() != w.length) return proto::Error{Errc::kMalformed, "disk write length mismatch"};
    e = v.pwrite_all(w.offset, w.data);
  } else {
    e = v.punch(w.offset, w.length);
  }
  if (e != 0) return proto::Error{Errc::kSystem, "writing " + disk.path() + ": " + std::strerror(e)};
  dirty_[w.volume] = true;
  bytes_ += w.length;
  return {};
}

void DiskCopyDestination::schedule_ack() {
  if (ack_posted_) return;
  ack_posted_ = true;
  asio::post(io_, [w = weak_from_this()] {
    auto self = w.lock();
    if (!self || self->stopped_) return;
    self->ack_posted_ = false;
    for (size_t i = 0; i < self->s_.disks.size(); ++i) {
      if (!self->dirty_[i]) continue;
      if (int e = self->s_.disks[i]->volume().sync(); e != 0)
        return self->fail("fdatasync " + self->s_.disks[i]->path() + ": " + std::strerror(e));
      self->dirty_[i] = false;
    }
    if (self->applied_ == self->acked_ && !self->force_ack_) return;
    self->force_ack_ = false;
    proto::ReplAck a;
    a.writer = self->s_.migration;
    a.seq = self->applied_;
    if (self->s_.session->send(wan::kMigControlStream, a)) self->acked_ = a.seq;
    else spdlog::warn("migration {}: disk ack not queued (control stream full)", self->s_.migration);
  });
}

void DiskCopyDestination::fail(const std::string& why) {
  if (stopped_) return;
  stopped_ = true;
  s_.on_error(why);
}

}  // namespace tideway::agent

#include "agent/served_disks.h"

#include <boost/asio/executor_work_guard.hpp>
#include <sys/stat.h>

#include <cassert>
#include <filesystem>

namespace tideway::agent {

namespace asio = boost::asio;

std::vector<ServedDisks::Image> ServedDisks::images_of(const VmSpec& spec, const std::string& disk_dir) {
  std::vector<Image> out;
  for (const auto& d : spec.disks)
    if (!d.image.empty()) out.push_back({disk_dir + "/" + d.image, d.create_bytes});
  return out;
}

proto::Result<std::unique_ptr<ServedDisks>> ServedDisks::open(const std::vector<Image>& images,
                                                              const std::string& vm_dir) {
  std::unique_ptr<ServedDisks> s(new ServedDisks());
  std::error_code ec;
  std::filesystem::create_directories(vm_dir, ec);
  if (ec) return proto::Error{proto::Errc::kSystem, "creating " + vm_dir + ": " + ec.message()};
  ::chmod(vm_dir.c_str(), 0700);
  // Running before the first server starts: stop() needs it to drain.
  s->thread_ = std::thread([io = &s->io_, guard = asio::make_work_guard(s->io_)] { io->run(); });
  for (size_t i = 0; i < images.size(); ++i) {
    const auto dir = std::filesystem::path(images[i].path).parent_path();
    std::filesystem::create_directories(dir, ec);
    if (ec) return proto::Error{proto::Errc::kSystem, "creating " + dir.string() + ": " + ec.message()};
    std::filesystem::path p(images[i].path);
    const bool exists = std::filesystem::exists(p, ec);
    if (!exists && images[i].create_bytes == 0)
      return proto::Error{proto::Errc::kInvalid, "disk image " + images[i].path + " does not exist (give size to create it)"};
    auto d = VmDisk::open(images[i].path, exists ? 0 : images[i].create_bytes);
    if (!d) return d.error();
    s->disks_.push_back(std::move(d).value());
    NbdServerOptions o;
    o.unix_path = vm_dir + "/disk" + std::to_string(i) + ".nbd";
    o.export_name = "disk";
    s->sockets_.push_back(o.unix_path);
    s->servers_.push_back(std::make_unique<NbdServer>(s->io_, *s->disks_.back(), o));
    if (auto r = s->servers_.back()->start(); !r) return r.error();
  }
  return s;
}

ServedDisks::~ServedDisks() { stop(); }

void ServedDisks::fill_sockets(VmSpec& spec) const {
  size_t i = 0;
  for (auto& d : spec.disks) {
    if (d.image.empty()) continue;
    assert(i < sockets_.size());
    d.socket = sockets_[i++];
    d.export_name = "disk";
  }
}

void ServedDisks::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& d : disks_) d->mirror_off();
  for (auto& s : servers_) s->stop();
  io_.stop();
  if (thread_.joinable()) thread_.join();
  servers_.clear();
  for (auto& d : disks_) (void)d->close();
}

}  // namespace tideway::agent

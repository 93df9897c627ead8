#include "replicator/volume_registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tideway::replicator {

using proto::Errc;
using proto::Error;

namespace {

Error sys_error(const std::string& what) { return Error{Errc::kSystem, what + ": " + std::strerror(errno)}; }

proto::Result<int> open_image(const std::string& path, uint64_t size, bool create) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (fd < 0) return sys_error("open " + path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Error e = sys_error("stat " + path);
    ::close(fd);
    return e;
  }
  if (create && st.st_size == 0 && ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    Error e = sys_error("truncate " + path);
    ::close(fd);
    return e;
  }
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != size) {
    ::close(fd);
    return Error{Errc::kInvalid, path + " has size " + std::to_string(st.st_size) + ", expected " +
                                     std::to_string(size)};
  }
  return fd;
}

}  // namespace

proto::Result<std::unique_ptr<VolumeRegistry>> VolumeRegistry::open(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir " + dir);
  std::unique_ptr<VolumeRegistry> r(new VolumeRegistry(dir));
  if (auto l = r->load(); !l) return l.error();
  return r;
}

VolumeRegistry::~VolumeRegistry() {
  for (auto& [k, v] : volumes_)
    if (v->fd >= 0) ::close(v->fd);
}

proto::Result<void> VolumeRegistry::load() {
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return sys_error("opendir " + dir_);
  std::vector<std::string> metas;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 5 && n.ends_with(".json")) metas.push_back(n);
  }
  ::closedir(d);
  for (const auto& m : metas) {
    const std::string path = dir_ + "/" + m;
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    auto v = std::make_unique<BackupVolume>();
    try {
      if (j.is_discarded()) throw std::invalid_argument("not JSON");
      v->writer = j.at("writer").get<uint32_t>();
      v->volume = j.at("volume").get<uint32_t>();
      v->name = j.at("name").get<std::string>();
      v->size = j.at("size").get<uint64_t>();
    } catch (const std::exception& e) {
      return Error{Errc::kMalformed, path + ": " + e.what()};
    }
    if (!proto::valid_volume_name(v->name) || m != v->name + ".json")
      return Error{Errc::kMalformed, path + ": name does not match the file"};
    v->path = dir_ + "/" + v->name + ".img";
    auto fd = open_image(v->path, v->size, false);
    if (!fd) return fd.error();
    v->fd = fd.value();
    auto key = std::make_pair(v->writer, v->volume);
    if (volumes_.count(key)) return Error{Errc::kMalformed, path + ": duplicate writer/volume ids"};
    volumes_[key] = std::move(v);
  }
  return {};
}

proto::Result<BackupVolume*> VolumeRegistry::attach(const proto::ReplAttach& a) {
  if (!proto::valid_volume_name(a.name)) return Error{Errc::kInvalid, "bad volume name"};
  std::lock_guard lock(mu_);
  auto key = std::make_pair(a.writer, a.volume);
  if (auto it = volumes_.find(key); it != volumes_.end()) {
    BackupVolume* v = it->second.get();
    if (v->name != a.name)
      return Error{Errc::kInvalid, "writer " + std::to_string(a.writer) + " volume " + std::to_string(a.volume) +
                                       " belongs to \"" + v->name + "\", not \"" + a.name + "\""};
    if (v->size != a.size)
      return Error{Errc::kInvalid, "\"" + a.name + "\" is " + std::to_string(v->size) +
                                       " bytes at the backup, the agent says " + std::to_string(a.size)};
    return v;
  }
  for (auto& [k, v] : volumes_)
    if (v->name == a.name)
      return Error{Errc::kInvalid, "\"" + a.name + "\" is already held for writer " + std::to_string(v->writer)};
  auto v = std::make_unique<BackupVolume>();
  v->writer = a.writer;
  v->volume = a.volume;
  v->name = a.name;
  v->size = a.size;
  v->path = dir_ + "/" + a.name + ".img";
  auto fd = open_image(v->path, a.size, true);
  if (!fd) return fd.error();
  v->fd = fd.value();
  // The image exists before its record; a crash in between leaves an
  // image without a record, which the next attach simply adopts.
  nlohmann::json j{{"writer", a.writer}, {"volume", a.volume}, {"name", a.name}, {"size", a.size}};
  const std::string meta = dir_ + "/" + a.name + ".json", tmp = meta + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << "\n";
    if (!out.flush()) return sys_error("write " + tmp);
  }
  int tfd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (tfd >= 0) {
    ::fsync(tfd);
    ::close(tfd);
  }
  if (::rename(tmp.c_str(), meta.c_str()) != 0) return sys_error("rename " + tmp);
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  BackupVolume* raw = v.get();
  volumes_[key] = std::move(v);
  return raw;
}

BackupVolume* VolumeRegistry::find(uint32_t writer, uint32_t volume) const {
  std::lock_guard lock(mu_);
  auto it = volumes_.find({writer, volume});
  return it == volumes_.end() ? nullptr : it->second.get();
}

BackupVolume* VolumeRegistry::find(const std::string& name) const {
  std::lock_guard lock(mu_);
  for (auto& [k, v] : volumes_)
    if (v->name == name) return v.get();
  return nullptr;
}

std::vector<BackupVolume*> VolumeRegistry::all() const {
  std::lock_guard lock(mu_);
  std::vector<BackupVolume*> out;
  for (auto& [k, v] : volumes_) out.push_back(v.get());
  return out;
}

}  // namespace tideway::replicator

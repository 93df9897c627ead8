#include "replicator/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tideway::replicator {

using proto::Errc;
using proto::Error;

proto::Result<Checkpoint> load_checkpoint(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return Checkpoint{};
    return Error{Errc::kSystem, "open " + path + ": " + std::strerror(errno)};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Error{Errc::kMalformed, path + ": not a JSON object"};
  try {
    Checkpoint c;
    c.applied.segment = j.at("segment").get<uint64_t>();
    c.applied.offset = j.at("offset").get<uint64_t>();
    for (auto& [k, v] : j.at("applied_seq").items()) {
      size_t used = 0;
      unsigned long w = std::stoul(k, &used);
      if (used != k.size() || w > UINT32_MAX) throw std::invalid_argument("writer id");
      c.applied_seq[static_cast<uint32_t>(w)] = v.get<uint64_t>();
    }
    return c;
  } catch (const std::exception& e) {
    return Error{Errc::kMalformed, path + ": " + e.what()};
  }
}

proto::Result<void> save_checkpoint(const std::string& path, const Checkpoint& c) {
  nlohmann::json j;
  j["segment"] = c.applied.segment;
  j["offset"] = c.applied.offset;
  j["applied_seq"] = nlohmann::json::object();
  for (auto& [w, s] : c.applied_seq) j["applied_seq"][std::to_string(w)] = s;
  const std::string text = j.dump() + "\n";
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error{Errc::kSystem, "create " + tmp + ": " + std::strerror(errno)};
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  int e = errno;
  ::close(fd);
  if (!ok) return Error{Errc::kSystem, "write " + tmp + ": " + std::strerror(e)};
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Error{Errc::kSystem, "rename " + tmp + ": " + std::strerror(errno)};
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

}  // namespace tideway::replicator

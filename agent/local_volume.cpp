#include "agent/local_volume.h"

#include "wan/file_io.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>

namespace tideway::agent {

using proto::Errc;

proto::Result<std::unique_ptr<LocalVolume>> LocalVolume::open(const std::string& path,
                                                              uint64_t create_size) {
  int flags = O_RDWR | O_CLOEXEC;
  if (create_size > 0) flags |= O_CREAT;
  int fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) return {Errc::kSystem, "open " + path + ": " + std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return {Errc::kSystem, "stat " + path + ": " + std::strerror(e)};
  }
  uint64_t size = 0;
  if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd, BLKGETSIZE64, &size) != 0) {
      int e = errno;
      ::close(fd);
      return {Errc::kSystem, "BLKGETSIZE64 " + path + ": " + std::strerror(e)};
    }
  } else if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
    if (size == 0 && create_size > 0) {
      if (::ftruncate(fd, static_cast<off_t>(create_size)) != 0) {
        int e = errno;
        ::close(fd);
        return {Errc::kSystem, "truncate " + path + ": " + std::strerror(e)};
      }
      size = create_size;
    }
  } else {
    ::close(fd);
    return {Errc::kInvalid, path + " is neither a regular file nor a block device"};
  }
  if (create_size > 0 && size != create_size) {
    ::close(fd);
    return {Errc::kInvalid, path + " exists with size " + std::to_string(size) + ", not " +
                                std::to_string(create_size)};
  }
  if (size == 0) {
    ::close(fd);
    return {Errc::kInvalid, path + " is empty"};
  }
  return std::unique_ptr<LocalVolume>(new LocalVolume(path, fd, size));
}

LocalVolume::~LocalVolume() { ::close(fd_); }

int LocalVolume::read(uint64_t offset, std::span<uint8_t> out) {
  if (!in_range(offset, out.size())) return EINVAL;
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) {  // a file shrunk under us: the rest reads as zeros
      std::memset(out.data() + done, 0, out.size() - done);
      break;
    }
    done += static_cast<size_t>(n);
  }
  return 0;
}

int LocalVolume::pwrite_all(uint64_t offset, std::span<const uint8_t> data) {
  if (!in_range(offset, data.size())) return EINVAL;
  return wan::pwrite_all(fd_, data.data(), data.size(), offset);
}

int LocalVolume::sync() { return ::fdatasync(fd_) == 0 ? 0 : errno; }

int LocalVolume::punch(uint64_t offset, uint64_t length) {
  if (!in_range(offset, length)) return EINVAL;
  return wan::zero_range(fd_, offset, length);
}

bool LocalVolume::next_data(uint64_t from, uint64_t& start, uint64_t& end) const {
  if (from >= size_) return false;
  const off_t d = ::lseek(fd_, static_cast<off_t>(from), SEEK_DATA);
  if (d < 0) {
    if (errno == ENXIO) return false;  // holes to the end
    start = from;                      // cannot tell: all data
    end = size_;
    return true;
  }
  const off_t h = ::lseek(fd_, d, SEEK_HOLE);
  start = static_cast<uint64_t>(d);
  end = h < 0 ? size_ : std::min<uint64_t>(static_cast<uint64_t>(h), size_);
  return start < end;
}

void LocalVolume::write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoDone done) {
  int e = pwrite_all(offset, data);
  if (e == 0 && fua) e = sync();
  done(e);
}

void LocalVolume::flush(IoDone done) { done(sync()); }

void LocalVolume::discard(uint64_t offset, uint64_t length, IoDone done) { done(punch(offset, length)); }

}  // namespace tideway::agent

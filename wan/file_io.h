// Whole-buffer positional I/O on a file descriptor, retrying short
// transfers and EINTR: the volume writes of both the agent (local volume)
// and the replicator (applier) go through these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace tideway::wan {

// 0 or an errno.
int pwrite_all(int fd, const uint8_t* data, size_t size, uint64_t offset);
// Makes the range read back as zeros: punches a hole, or writes zeros where
// the file system or device cannot punch. 0 or an errno.
int zero_range(int fd, uint64_t offset, uint64_t length);
// Replaces `path` with `data` all at once (a temporary file, fsync, rename,
// fsync of the directory): a crash leaves the old file or the new, never a
// torn one. 0 or an errno.
int write_file_atomic(const std::string& path, std::span<const uint8_t> data);

}  // namespace tideway::wan

// The FUSE tap's request handlers (low-level API): a root directory holding
// one fixed-size file backed by the BlockTarget. Writes, fsyncs and discards
// are answered from the target's completion callback, which may run on any
// thread and much later (sync mode: after a WAN round trip); the worker that
// received the request is free again as soon as the target has it.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <span>
#include <vector>

#include "agent/fuse_export_impl.h"

namespace tideway::agent {
namespace {

// Nothing about the inodes ever changes (the size is fixed), so the kernel
// may cache names and attributes for long.
constexpr double kAttrTimeout = 3600.0;

FuseExport::Impl& self(fuse_req_t req) { return *static_cast<FuseExport::Impl*>(fuse_req_userdata(req)); }

void fill_attr(const FuseExport::Impl& x, fuse_ino_t ino, struct stat* st) {
  *st = {};
  st->st_ino = ino;
  st->st_uid = ::geteuid();
  st->st_gid = ::getegid();
  st->st_atim = st->st_mtim = st->st_ctim = x.started;
  if (ino == kRootIno) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  } else {
    assert(ino == kFileIno);
    st->st_mode = S_IFREG | (x.opt.file_mode & 07777);
    st->st_nlink = 1;
    st->st_size = static_cast<off_t>(x.target.size());
    st->st_blksize = 4096;
    st->st_blocks = static_cast<blkcnt_t>((x.target.size() + 511) / 512);
  }
}

bool known(fuse_ino_t ino) { return ino == kRootIno || ino == kFileIno; }

void op_init(void* userdata, fuse_conn_info* conn) {
  auto& x = *static_cast<FuseExport::Impl*>(userdata);
  conn->max_write = kMaxWrite;
  // Splice would only move data into a pipe we must copy out of anyway: the
  // target takes a memory span.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  // Several O_DIRECT requests of one caller in flight at once (loop --direct-io).
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  if (x.opt.cache == FuseCacheMode::kWriteback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  x.writeback_granted = (conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0;
  // Background requests (async DIO, writeback) the kernel keeps in flight;
  // the default of 12 throttles a loop device well below its queue depth.
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto& x = self(req);
  if (parent != kRootIno) return (void)fuse_reply_err(req, ENOTDIR);
  if (x.opt.file_name != name) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e{};
  e.ino = kFileIno;
  e.generation = 1;
  e.attr_timeout = e.entry_timeout = kAttrTimeout;
  fill_attr(x, kFileIno, &e.attr);
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (!known(ino)) return (void)fuse_reply_err(req, ENOENT);
  struct stat st;
  fill_attr(self(req), ino, &st);
  fuse_reply_attr(req, &st, kAttrTimeout);
}

// The size is the volume's: only a no-op size change is accepted. Mode,
// owner and times are accepted and ignored (mkfs and the writeback cache
// set them; failing would break mkfs).
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  auto& x = self(req);
  if (!known(ino)) return (void)fuse_reply_err(req, ENOENT);
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (ino != kFileIno) return (void)fuse_reply_err(req, EISDIR);
    if (attr->st_size < 0 || static_cast<uint64_t>(attr->st_size) != x.target.size())
      return (void)fuse_reply_err(req, EPERM);
  }
  struct stat st;
  fill_attr(x, ino, &st);
  fuse_reply_attr(req, &st, kAttrTimeout);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto& x = self(req);
  if (ino == kRootIno) return (void)fuse_reply_err(req, EISDIR);
  if (ino != kFileIno) return (void)fuse_reply_err(req, ENOENT);
  // libfuse asks for atomic O_TRUNC: the open carries it. The size is fixed.
  if (fi->flags & O_TRUNC) return (void)fuse_reply_err(req, EPERM);
  fi->direct_io = x.opt.cache == FuseCacheMode::kDirectIo;
  // Every write passes through this mount, so cached pages stay valid
  // across opens.
  fi->keep_cache = x.opt.cache != FuseCacheMode::kDirectIo;
  fi->noflush = 1;  // FUSE flush (close) carries no meaning here
  fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  auto& x = self(req);
  if (ino != kFileIno) return (void)fuse_reply_err(req, EISDIR);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  const uint64_t total = x.target.size();
  if (static_cast<uint64_t>(off) >= total) return (void)fuse_reply_buf(req, nullptr, 0);
  const size_t n = static_cast<size_t>(std::min<uint64_t>(size, total - static_cast<uint64_t>(off)));
  thread_local std::vector<uint8_t> buf;  // one per worker, at most max_read
  buf.resize(n);
  if (int e = x.target.read(static_cast<uint64_t>(off), {buf.data(), n}); e != 0)
    return (void)fuse_reply_err(req, e);
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), n);
}

// Like a block device: a write at or past the end fails with ENOSPC, one
// that crosses the end is cut short there.
void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  auto& x = self(req);
  if (ino != kFileIno) return (void)fuse_reply_err(req, EISDIR);
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  const uint64_t total = x.target.size();
  if (size == 0) return (void)fuse_reply_write(req, 0);
  if (static_cast<uint64_t>(off) >= total) return (void)fuse_reply_err(req, ENOSPC);
  const size_t n = static_cast<size_t>(std::min<uint64_t>(size, total - static_cast<uint64_t>(off)));
  // fi->flags are the flags of this write (open flags plus RWF_DSYNC/SYNC).
  // O_SYNC includes the O_DSYNC bit.
  const bool fua = (fi->flags & O_DSYNC) != 0;
  x.gate.acquire();
  x.target.write(static_cast<uint64_t>(off), {reinterpret_cast<const uint8_t*>(buf), n}, fua,
                 [&x, req, n](int err) {
                   if (err != 0)
                     fuse_reply_err(req, err);
                   else
                     fuse_reply_write(req, n);
                   x.gate.release();  // after the reply: teardown waits for it
                 });
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }
void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

// The durability barrier. The kernel sends it only after every write it
// covers has been answered, i.e. completed by the target.
void op_fsync(fuse_req_t req, fuse_ino_t ino, int /*datasync*/, fuse_file_info*) {
  auto& x = self(req);
  if (ino != kFileIno) return (void)fuse_reply_err(req, 0);
  x.gate.acquire();
  x.target.flush([&x, req](int err) {
    fuse_reply_err(req, err);
    x.gate.release();
  });
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, fuse_file_info*) {
  auto& x = self(req);
  if (ino != kFileIno) return (void)fuse_reply_err(req, EISDIR);
  if (off < 0 || len <= 0) return (void)fuse_reply_err(req, EINVAL);
  const uint64_t total = x.target.size();
  const uint64_t start = static_cast<uint64_t>(off);
  const uint64_t length = static_cast<uint64_t>(len);
  const bool within = start <= total && length <= total - start;
  if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {  // discard (loop, fstrim)
    if (start >= total) return (void)fuse_reply_err(req, 0);
    const uint64_t n = std::min(length, total - start);
    x.gate.acquire();
    x.target.discard(start, n, [&x, req](int err) {
      fuse_reply_err(req, err);
      x.gate.release();
    });
    return;
  }
  // Preallocation: every block of the volume already exists.
  if (mode == FALLOC_FL_KEEP_SIZE) return (void)fuse_reply_err(req, 0);
  if (mode == 0) return (void)fuse_reply_err(req, within ? 0 : EFBIG);
  fuse_reply_err(req, EOPNOTSUPP);  // zero range, collapse, insert: not offered
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  auto& x = self(req);
  struct statvfs s {};
  s.f_bsize = s.f_frsize = 4096;
  s.f_blocks = x.target.size() / 4096;
  s.f_files = 2;
  s.f_namemax = 255;
  fuse_reply_statfs(req, &s);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino == kFileIno) return (void)fuse_reply_err(req, ENOTDIR);
  if (ino != kRootIno) return (void)fuse_reply_err(req, ENOENT);
  fuse_reply_open(req, fi);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  auto& x = self(req);
  if (ino != kRootIno) return (void)fuse_reply_err(req, ENOTDIR);
  struct Entry {
    const char* name;
    fuse_ino_t ino;
    mode_t mode;
  };
  const Entry entries[] = {{".", kRootIno, S_IFDIR}, {"..", kRootIno, S_IFDIR},
                           {x.opt.file_name.c_str(), kFileIno, S_IFREG}};
  std::vector<char> buf(size);
  size_t used = 0;
  for (off_t i = std::max<off_t>(off, 0); i < static_cast<off_t>(std::size(entries)); ++i) {
    struct stat st {};
    st.st_ino = entries[i].ino;
    st.st_mode = entries[i].mode;
    const size_t need = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].name, &st, i + 1);
    if (need > size - used) break;  // full: the kernel asks again from i
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

// The namespace is fixed: clear refusals instead of ENOSYS.
void op_mknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { fuse_reply_err(req, EPERM); }
void op_mkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { fuse_reply_err(req, EPERM); }
void op_unlink(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EPERM); }
void op_rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) {
  fuse_reply_err(req, EPERM);
}
void op_create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) { fuse_reply_err(req, EPERM); }

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.fallocate = op_fallocate;
  ops.statfs = op_statfs;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.releasedir = op_releasedir;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_unlink;
  ops.rename = op_rename;
  ops.create = op_create;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& fuse_export_ops() {
  static const fuse_lowlevel_ops ops = make_ops();
  return ops;
}

}  // namespace tideway::agent

#include "wan/codec/big_buffer.h"

#include <sys/mman.h>

#include <new>
#include <utility>

namespace tideway::wan::codec {

BigBuffer::BigBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // Advice only: without THP (or with it off) the buffer still works.
  ::madvise(p, bytes, MADV_HUGEPAGE);
  data_ = static_cast<uint8_t*>(p);
}

BigBuffer::~BigBuffer() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

BigBuffer& BigBuffer::operator=(BigBuffer&& o) noexcept {
  std::swap(data_, o.data_);
  std::swap(size_, o.size_);
  return *this;
}

}  // namespace tideway::wan::codec

// Large buffers for the codec's state (CBR slab, its index, the delta
// store): mmap'ed, so they start zero and untouched pages cost no memory,
// with transparent huge pages requested, because the codec touches them at
// random and 4 KiB pages would make nearly every access a TLB miss.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tideway::wan::codec {

class BigBuffer {
 public:
  BigBuffer() = default;
  // Aborts (std::bad_alloc) if the mapping fails.
  explicit BigBuffer(size_t bytes);
  ~BigBuffer();
  BigBuffer(BigBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  BigBuffer& operator=(BigBuffer&& o) noexcept;
  BigBuffer(const BigBuffer&) = delete;
  BigBuffer& operator=(const BigBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tideway::wan::codec

#include "wan/codec/state_digest.h"

#include <xxhash.h>

#include <memory>

namespace tideway::wan::codec {

uint64_t state_digest(const CbrSlab& slab, const DeltaStore& store) {
  struct StateDeleter {
    void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
  };
  std::unique_ptr<XXH3_state_t, StateDeleter> st(XXH3_createState());
  XXH3_64bits_reset(st.get());
  const uint64_t inserts = slab.inserts();
  XXH3_64bits_update(st.get(), &inserts, sizeof inserts);
  for (uint32_t s = 0; s < slab.filled(); ++s) XXH3_64bits_update(st.get(), slab.at(s), slab.slot_size());
  store.for_each([&](uint64_t address, const uint8_t* page) {
    XXH3_64bits_update(st.get(), &address, sizeof address);
    XXH3_64bits_update(st.get(), page, kPageSize);
  });
  const uint32_t head = store.head();
  XXH3_64bits_update(st.get(), &head, sizeof head);
  return XXH3_64bits_digest(st.get());
}

}  // namespace tideway::wan::codec

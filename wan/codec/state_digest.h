// A digest of the state both ends mirror (CBR slab contents and insert
// count, delta store entries and eviction cursors). Two ends that applied
// the same batches have equal digests. O(state size): tests and debugging.
#pragma once

#include <cstdint>

#include "wan/codec/cbr_slab.h"
#include "wan/codec/delta_store.h"

namespace tideway::wan::codec {

uint64_t state_digest(const CbrSlab& slab, const DeltaStore& store);

}  // namespace tideway::wan::codec

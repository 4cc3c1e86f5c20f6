// The KV block free list and reservations (see kv_block_pool.h).
#include "serve/kv_block_pool.h"

#include <fmt/format.h>

#include "qrt/error.h"

namespace qrt::serve {

KvBlockPool::KvBlockPool(int64_t blocks, int64_t block_positions) : total_(blocks), block_positions_(block_positions) {
  if (blocks < 1 || blocks > INT32_MAX || block_positions < 1)
    throw invalid_input(fmt::format("KV pool: {} blocks of {} positions: expected at least one block of one position",
                                    blocks, block_positions));
  free_.resize(static_cast<size_t>(blocks));
  // Block 0 on top of the stack, so a fresh pool hands out 0, 1, 2, ...
  for (int64_t i = 0; i < blocks; ++i) free_[static_cast<size_t>(i)] = static_cast<int32_t>(blocks - 1 - i);
}

bool KvBlockPool::reserve(SequenceBlocks& seq, int64_t positions) {
  if (seq.reserved != 0 || !seq.table.empty()) throw internal_error("KV pool: a sequence reserved twice");
  const int64_t need = blocks_for(positions);
  if (positions < 1 || need > unreserved()) return false;
  seq.reserved = need;
  reserved_ += need;
  return true;
}

void KvBlockPool::grow(SequenceBlocks& seq, int64_t positions) {
  const int64_t need = blocks_for(positions);
  if (need > seq.reserved)
    throw internal_error(fmt::format("KV pool: a sequence needs {} blocks for {} positions but reserved {}", need,
                                     positions, seq.reserved));
  while (static_cast<int64_t>(seq.table.size()) < need) {
    // Cannot be empty: every taken block is inside some reservation, and reservations never
    // exceed the pool.
    seq.table.push_back(free_.back());
    free_.pop_back();
  }
}

void KvBlockPool::release(SequenceBlocks& seq) {
  free_.insert(free_.end(), seq.table.rbegin(), seq.table.rend());
  reserved_ -= seq.reserved;
  seq.table.clear();
  seq.reserved = 0;
}

}  // namespace qrt::serve

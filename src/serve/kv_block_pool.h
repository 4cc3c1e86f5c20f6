// The bookkeeping of a batched engine's paged KV cache (qrt/batch_engine.h): which of the pool's
// blocks are free, and how many each sequence has reserved. The engine owns the memory; this
// class only hands out block numbers.
//
// Admission reserves a sequence's worst case up front (prompt + max_tokens positions, rounded up
// to whole blocks), so a running sequence never finds the pool empty and nothing is ever
// preempted or recomputed; the blocks themselves are taken one at a time as positions are
// written (grow), and all of them go back to the free list the moment the sequence ends
// (release). A freed block is reused as it is: no copy, no clearing (the engine only reads the
// positions a sequence wrote). The free list is a stack, so the most recently used blocks, still
// in the cache and already paged in, are handed out first.
#pragma once

#include <cstdint>
#include <vector>

namespace qrt::serve {

// One sequence's share of the pool: its block table and its reservation.
struct SequenceBlocks {
  std::vector<int32_t> table;  // logical block -> pool block
  int64_t reserved = 0;        // blocks it may take (table.size() <= reserved)
};

class KvBlockPool {
 public:
  // `blocks` pool blocks of `block_positions` positions each.
  KvBlockPool(int64_t blocks, int64_t block_positions);

  int64_t blocks() const { return static_cast<int64_t>(total_); }
  int64_t block_positions() const { return block_positions_; }
  // Blocks a sequence of `positions` positions needs.
  int64_t blocks_for(int64_t positions) const { return (positions + block_positions_ - 1) / block_positions_; }
  // Reserves blocks_for(positions) for `seq` (which holds none yet); false when the unreserved
  // blocks are too few (the caller queues the request).
  bool reserve(SequenceBlocks& seq, int64_t positions);
  // Takes blocks until `seq`'s table covers `positions` positions; throws qrt::Error (internal)
  // when that exceeds its reservation (a scheduler bug, never a client's).
  void grow(SequenceBlocks& seq, int64_t positions);
  // Every block of `seq` back to the free list, its reservation cancelled.
  void release(SequenceBlocks& seq);

  int64_t in_use() const { return total_ - static_cast<int64_t>(free_.size()); }
  int64_t reserved() const { return reserved_; }
  int64_t unreserved() const { return total_ - reserved_; }

 private:
  int64_t total_ = 0, block_positions_ = 1, reserved_ = 0;
  std::vector<int32_t> free_;  // a stack: the last freed block is the next taken
};

}  // namespace qrt::serve

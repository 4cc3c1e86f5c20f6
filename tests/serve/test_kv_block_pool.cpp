// The paged KV cache's free list and reservations (serve/kv_block_pool.h).
#include <gtest/gtest.h>

#include "qrt/error.h"
#include "serve/kv_block_pool.h"

namespace qrt::serve {
namespace {

TEST(KvBlockPool, ReservesWholeRequestsAndHandsOutBlocksAsPositionsNeedThem) {
  KvBlockPool pool(10, 16);
  EXPECT_EQ(pool.blocks_for(1), 1);
  EXPECT_EQ(pool.blocks_for(16), 1);
  EXPECT_EQ(pool.blocks_for(17), 2);
  SequenceBlocks a, b, c;
  ASSERT_TRUE(pool.reserve(a, 100));  // 7 blocks
  EXPECT_EQ(a.reserved, 7);
  EXPECT_EQ(pool.reserved(), 7);
  EXPECT_EQ(pool.in_use(), 0);  // reserved, not taken yet
  EXPECT_FALSE(pool.reserve(b, 64));  // 4 more do not fit: queue
  EXPECT_EQ(b.reserved, 0);
  ASSERT_TRUE(pool.reserve(b, 48));  // 3 do
  EXPECT_EQ(pool.unreserved(), 0);
  EXPECT_FALSE(pool.reserve(c, 1));

  pool.grow(a, 20);  // positions 0..19: two blocks
  EXPECT_EQ(a.table, (std::vector<int32_t>{0, 1}));
  pool.grow(b, 1);
  EXPECT_EQ(b.table, (std::vector<int32_t>{2}));
  pool.grow(a, 33);
  EXPECT_EQ(a.table, (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(pool.in_use(), 4);
  pool.grow(a, 20);  // already covered: nothing taken
  EXPECT_EQ(pool.in_use(), 4);
  EXPECT_THROW(pool.grow(b, 49), Error);  // past its reservation: a scheduler bug, never silent

  // a ends: its blocks come back at once and are the next ones handed out (last freed first).
  pool.release(a);
  EXPECT_TRUE(a.table.empty());
  EXPECT_EQ(a.reserved, 0);
  EXPECT_EQ(pool.in_use(), 1);
  EXPECT_EQ(pool.reserved(), 3);
  ASSERT_TRUE(pool.reserve(c, 40));
  pool.grow(c, 40);
  EXPECT_EQ(c.table, (std::vector<int32_t>{0, 1, 3}));
  EXPECT_THROW(pool.reserve(c, 1), Error);  // a sequence reserves once
}

TEST(KvBlockPool, RequestsLargerThanThePoolNeverFitAndBadPoolsAreErrors) {
  KvBlockPool pool(4, 16);
  SequenceBlocks s;
  EXPECT_FALSE(pool.reserve(s, 65));
  EXPECT_FALSE(pool.reserve(s, 0));
  EXPECT_TRUE(pool.reserve(s, 64));
  EXPECT_THROW(KvBlockPool(0, 16), Error);
  EXPECT_THROW(KvBlockPool(4, 0), Error);
}

}  // namespace
}  // namespace qrt::serve

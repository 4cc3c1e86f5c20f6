// The value loops of cpu_attention_avx2.cpp and cpu_attention_avx512.cpp walk a head's dimensions in
// chunks of up to eight vectors, so the accumulators of a chunk stay in registers across all
// positions. This header holds that walk once. It is a template over the caller's lambda (a type
// local to that file), so each level file instantiates its own copy with its own flags.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace qrt::cpu_attention {

// For c0 = 0, 8 L, 16 L, ... below head_dim: fn(std::integral_constant<int, NC>{}, c0), where NC is
// the number of L-float vectors in that chunk (at most 8). head_dim must be a multiple of L.
template <int L, class Fn>
inline void for_each_value_chunk(int64_t head_dim, Fn&& fn) {
  for (int64_t c0 = 0; c0 < head_dim; c0 += 8 * L) {
    switch (std::min<int64_t>(8, (head_dim - c0) / L)) {
      case 1: fn(std::integral_constant<int, 1>{}, c0); break;
      case 2: fn(std::integral_constant<int, 2>{}, c0); break;
      case 3: fn(std::integral_constant<int, 3>{}, c0); break;
      case 4: fn(std::integral_constant<int, 4>{}, c0); break;
      case 5: fn(std::integral_constant<int, 5>{}, c0); break;
      case 6: fn(std::integral_constant<int, 6>{}, c0); break;
      case 7: fn(std::integral_constant<int, 7>{}, c0); break;
      default: fn(std::integral_constant<int, 8>{}, c0); break;
    }
  }
}

}  // namespace qrt::cpu_attention

// Per-game random stream: game i of a run with seed S draws from its own splitmix64 stream
// seeded by (S, i), so any game can be regenerated alone, on any thread or device.
#pragma once
#include "engine/defs.h"

namespace rr {

struct Rng {
  uint64_t state;
  RR_HD static Rng for_game(uint64_t seed, uint64_t index) {
    Rng r{seed * 0x9E3779B97F4A7C15ull ^ (index + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull};
    r.next();
    return r;
  }
  RR_HD uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) by multiply-shift on the top 32 bits (bias < n / 2^32).
  RR_HD uint32_t below(uint32_t n) { return (uint32_t)(((next() >> 32) * (uint64_t)n) >> 32); }
};

}  // namespace rr

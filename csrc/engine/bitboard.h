// Multi-word bitboards over the board's lookup grid (bit = gx * grid_w + gy, which is also the
// cell enumeration order), used for word-parallel flood fills in territory detection.
#pragma once
#include "defs.h"

// SSE2 (every x86-64 host) for the per-cell byte masks of state.h; never in device code, and
// not under nvcc or NVRTC, whose host and device passes share these headers. RR_NO_HOST_SIMD
// builds the portable path on the host too (tests compare the two).
#if defined(__SSE2__) && !defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(RR_NO_HOST_SIMD)
#include <emmintrin.h>
#define RR_HOST_SSE2 1
#else
#define RR_HOST_SSE2 0
#endif

namespace rr {

constexpr int BB_WORDS = 10;  // 25 x 25 grid of the hexagonal board = 625 bits

struct BB {
  uint64_t w[BB_WORDS];
};

RR_HD inline void bb_zero(BB& b, int nw) {
  for (int i = 0; i < nw; i++) b.w[i] = 0;
}
RR_HD inline void bb_set(BB& b, int bit) { b.w[bit >> 6] |= 1ull << (bit & 63); }
RR_HD inline bool bb_any(const BB& b, int nw) {
  for (int i = 0; i < nw; i++)
    if (b.w[i]) return true;
  return false;
}
RR_HD inline bool bb_intersects(const BB& a, const BB& b, int nw) {
  for (int i = 0; i < nw; i++)
    if (a.w[i] & b.w[i]) return true;
  return false;
}
// Eight bytes at `p` as a little-endian word (the host's one unaligned load, x86-64 and AArch64
// hosts being little-endian; the device assembles them byte by byte, with the same result).
RR_HD inline uint64_t load_le64(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  uint64_t w = 0;
  for (int k = 0; k < 8; k++) w |= (uint64_t)p[k] << (8 * k);
  return w;
#else
  uint64_t w;
  __builtin_memcpy(&w, p, 8);
  return w;
#endif
}

// The set bits of each byte of v, counted in that byte (0 to 8 each): SWAR, in a few register
// operations. Callers can add several words' counts and take running sums across the bytes with
// one multiply (popcount64 below, placement_move_at).
RR_HD inline uint64_t byte_popcounts(uint64_t v) {
  v = v - ((v >> 1) & 0x5555555555555555ull);
  v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
  return (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0Full;
}
RR_HD inline int popcount64(uint64_t v) {
#if defined(__CUDA_ARCH__)
  return __popcll(v);
#elif defined(__x86_64__) && !defined(__POPCNT__)
  // Wheels target baseline x86-64, where the builtin is a call into libgcc on every use (1% of
  // engine time in a profile); the same count inline: the bytes' counts summed into the top byte.
  return (int)((byte_popcounts(v) * 0x0101010101010101ull) >> 56);
#else
  return __builtin_popcountll(v);
#endif
}
RR_HD inline int ctz64(uint64_t v) {
#if defined(__CUDA_ARCH__)
  return __ffsll((long long)v) - 1;
#else
  return __builtin_ctzll(v);
#endif
}
RR_HD inline int bb_count_and(const BB& a, const BB& b, int nw) {
  int n = 0;
  for (int i = 0; i < nw; i++) n += popcount64(a.w[i] & b.w[i]);
  return n;
}
RR_HD inline int bb_lowest(const BB& b, int nw) {
  for (int i = 0; i < nw; i++)
    if (b.w[i]) return i * 64 + ctz64(b.w[i]);
  return -1;
}
// dst |= src shifted towards higher bits by off (off > 0) or lower bits by -off; |off| < 64.
RR_HD inline void bb_or_shifted(BB& dst, const BB& src, int off, int nw) {
  if (off > 0) {
    for (int i = nw - 1; i >= 0; i--) {
      uint64_t v = src.w[i] << off;
      if (i > 0) v |= src.w[i - 1] >> (64 - off);
      dst.w[i] |= v;
    }
  } else {
    int k = -off;
    for (int i = 0; i < nw; i++) {
      uint64_t v = src.w[i] >> k;
      if (i + 1 < nw) v |= src.w[i + 1] << (64 - k);
      dst.w[i] |= v;
    }
  }
}

// dst = (src & mask) shifted towards higher bits by off (off > 0) or lower bits by -off, over
// NW words (|off| < 64): the cells of src that have a neighbour at offset off (mask), moved
// onto that neighbour.
template <int NW>
RR_HD inline void bb_step_n(BB& dst, const BB& src, const BB& mask, int off) {
  if (off > 0) {
    for (int i = NW - 1; i >= 0; i--) {
      uint64_t v = (src.w[i] & mask.w[i]) << off;
      if (i > 0) v |= (src.w[i - 1] & mask.w[i - 1]) >> (64 - off);
      dst.w[i] = v;
    }
  } else {
    int k = -off;
    for (int i = 0; i < NW; i++) {
      uint64_t v = (src.w[i] & mask.w[i]) >> k;
      if (i + 1 < NW) v |= (src.w[i + 1] & mask.w[i + 1]) << (64 - k);
      dst.w[i] = v;
    }
  }
}

// dst = cells c (with an on-board neighbour at offset off, per mask) whose neighbour c + off
// is in src: the same shift backwards, masked after it.
template <int NW>
RR_HD inline void bb_pull_n(BB& dst, const BB& src, const BB& mask, int off) {
  if (off > 0) {
    for (int i = 0; i < NW; i++) {
      uint64_t v = src.w[i] >> off;
      if (i + 1 < NW) v |= src.w[i + 1] << (64 - off);
      dst.w[i] = v & mask.w[i];
    }
  } else {
    int k = -off;
    for (int i = NW - 1; i >= 0; i--) {
      uint64_t v = src.w[i] << k;
      if (i > 0) v |= src.w[i - 1] >> (64 - k);
      dst.w[i] = v & mask.w[i];
    }
  }
}

RR_HD inline bool bb_test(const BB& b, int bit) { return (b.w[bit >> 6] >> (bit & 63)) & 1; }

}  // namespace rr

// The reference's state fingerprint and its 64-bit hash (RULES.md 9). The fingerprint is
// streamed character by character into a sink, so hashing never builds a string.
#pragma once
#include "state.h"

namespace rr {

RR_HD inline const char* phase_name(int ph) {
  switch (ph) {
    case PH_RING_PLACEMENT: return "ring_placement";
    case PH_MOVEMENT: return "movement";
    case PH_CAPTURE: return "capture";
    case PH_CHAIN_CAPTURE: return "chain_capture";
    case PH_LINE_PROCESSING: return "line_processing";
    case PH_TERRITORY_PROCESSING: return "territory_processing";
    case PH_FORCED_ELIMINATION: return "forced_elimination";
    default: return "game_over";
  }
}

struct HashSink {
  uint32_t a = 0xDEADBEEFu, b = 0x41C6CE57u;
  RR_HD void put(char ch) {
    uint32_t u = (uint8_t)ch;
    a = (a ^ u) * 0x9E3779B1u;
    b = (b ^ u) * 0x5F356495u;
  }
  RR_HD void finish(uint32_t& hi, uint32_t& lo) const {
    uint32_t a2 = ((a ^ (a >> 16)) * 0x85EBCA6Bu) ^ ((b ^ (b >> 13)) * 0xC2B2AE35u);
    uint32_t b2 = ((b ^ (b >> 16)) * 0x85EBCA6Bu) ^ ((a2 ^ (a2 >> 13)) * 0xC2B2AE35u);
    hi = b2;
    lo = a2;
  }
};

// Appends into a caller-provided buffer (host use: fingerprints for debugging and parity).
struct StringSink {
  char* buf;
  int cap;
  int len;
  RR_HD void put(char ch) {
    if (len + 1 < cap) buf[len] = ch;
    len++;
  }
};

template <class Sink>
RR_HD inline void put_str(Sink& k, const char* str) {
  while (*str) k.put(*str++);
}

template <class Sink>
RR_HD inline void put_int(Sink& k, int v) {
  char tmp[12];
  int n = 0;
  if (v < 0) {
    k.put('-');
    v = -v;
  }
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) k.put(tmp[--n]);
}

template <class Sink>
RR_HD inline void put_key(Sink& k, const Geometry& g, int c) {
  for (int i = 0; i < g.key_len[c]; i++) k.put(g.key[c][i]);
}

template <class Sink>
RR_HD inline void fingerprint(const Geometry& g, const State& s, Sink& k) {
  bool done = s.status == ST_COMPLETED;
  put_int(k, done ? 0 : s.current);
  k.put(':');
  put_str(k, done ? "game_over" : phase_name(s.phase));
  k.put(':');
  put_str(k, done ? "completed" : "active");
  k.put(':');
  k.put(s.pending_line ? '1' : '0');
  k.put('#');
  for (int p = 1; p <= s.num_players; p++) {
    if (p > 1) k.put('|');
    put_int(k, p);
    k.put(':');
    put_int(k, s.hand[p]);
    k.put(':');
    put_int(k, s.elim[p]);
    k.put(':');
    put_int(k, s.terr[p]);
  }
  k.put('#');
  bool first = true;
  for (int i = 0; i < g.num_cells; i++) {
    int c = g.hash_order[i];
    if (s.top[c] == NO_CELL) continue;
    if (!first) k.put('|');
    first = false;
    put_key(k, g, c);
    k.put(':');
    put_int(k, s.ctrl[c]);
    k.put(':');
    put_int(k, s.height[c]);
    k.put(':');
    put_int(k, s.cap[c]);
  }
  k.put('#');
  first = true;
  for (int i = 0; i < g.num_cells; i++) {
    int c = g.hash_order[i];
    if (!s.marker[c]) continue;
    if (!first) k.put('|');
    first = false;
    put_key(k, g, c);
    k.put(':');
    put_int(k, s.marker[c]);
  }
  k.put('#');
  first = true;
  for (int i = 0; i < g.num_cells; i++) {
    int c = g.hash_order[i];
    if (!s.collapsed[c]) continue;
    if (!first) k.put('|');
    first = false;
    put_key(k, g, c);
    k.put(':');
    put_int(k, s.collapsed[c]);
  }
}

RR_HD inline uint64_t state_hash(const Geometry& g, const State& s) {
  HashSink k;
  fingerprint(g, s, k);
  uint32_t hi, lo;
  k.finish(hi, lo);
  return ((uint64_t)hi << 32) | lo;
}

}  // namespace rr

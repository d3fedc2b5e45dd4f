// Territory regions (RULES.md 6.5): one flood-fill pass per marker colour (in order of first
// appearance) plus a collapsed-only pass; processability; border markers; region processing.
#pragma once
#include "state.h"

namespace rr {

constexpr int MAX_REGIONS = 512;
constexpr int REGION_PASSES = MAX_PLAYERS + 1;  // slot 0: collapsed-only pass, 1..4: border colour

struct Region {
  int16_t seed;
  uint8_t pass;        // border colour, or 0 for the collapsed-only pass
  uint8_t controller;  // the reference's controllingPlayer
  int16_t size;
  int16_t mover_ctrl_inside;    // stacks inside controlled by the mover
  int16_t mover_buried_inside;  // stacks inside holding a mover ring below the top
};

// The components of one pass's allowed cells, kept from the scan that found them: a pass's
// components depend only on its walls (collapsed cells and that pass's markers), and from one
// turn's scan to the next the walls of about half the passes are unchanged (a move lays markers
// of the mover's colour only; cells collapse rarely), so those passes need no flood. Exact: used
// only when the walls are equal word for word on the same geometry. Kept on the host for boards
// of at most CACHE_WORDS words (square8, hex8), where the floods are most of a scan's cost.
struct PassComponents {
  static constexpr int CACHE_WORDS = 2, MAX_COMPS = 8;
  const Geometry* geometry;  // the geometry the entry was made on; null: empty
  int n;                 // components, in ascending order of their lowest bit
  uint64_t walls[CACHE_WORDS];
  uint64_t comp[MAX_COMPS][CACHE_WORDS];
};

struct RegionScan {
  int n;
  Region r[MAX_REGIONS];
  // Indexed by pass (0: collapsed-only, 1..4: marker colour). Default-initialised empty, so a
  // RegionScan made with `new` or on the stack never matches garbage; device code never reads it.
  PassComponents cache[REGION_PASSES] = {};
};

RR_HD inline bool region_cell_ok(const State& s, int c, int pass) {
  return !s.collapsed[c] && (pass == 0 || s.marker[c] != pass);
}

RR_HD inline bool stack_has_buried(const State& s, int c, uint8_t p) {
  int idx = 0;
  for (int r = s.top[c]; r != NO_CELL; r = s.ring_next[r], idx++)
    if (idx > 0 && s.ring_owner[r] == p) return true;
  return false;
}

// Breadth-first flood from seed over cells allowed by `pass`; writes ids into comp and the
// cells in BFS order into `order` (may be null). Returns the component size.
RR_HD inline int region_flood(const Geometry& g, const State& s, int seed, int pass, int16_t* comp, int16_t id,
                              int16_t* order) {
  int16_t queue[MAX_CELLS];
  int head = 0, tail = 0;
  queue[tail++] = (int16_t)seed;
  comp[seed] = id;
  while (head < tail) {
    int c = queue[head++];
    for (int d = 0; d < g.num_tdirs; d++) {
      int nb = g.tnbr[c][d];
      if (nb == NO_CELL || comp[nb] != -1 || !region_cell_ok(s, nb, pass)) continue;
      comp[nb] = id;
      queue[tail++] = (int16_t)nb;
    }
  }
  if (order)
    for (int i = 0; i < tail; i++) order[i] = queue[i];
  return tail;
}

RR_HD inline int popcount8(unsigned v) {
  int n = 0;
  for (; v; v &= v - 1) n++;
  return n;
}

RR_HD inline int count_buried_stacks(const State& s, uint8_t p);

// The region scan below is written once over NW, the number of 64-bit words a board's
// bitboards use (g.bb_words), and instantiated per board size: with NW known at compile time
// the word loops unroll and the masks stay in registers (square8 is one word), instead of
// looping over and clearing the 10 words the largest board needs on every call.

// Grow comp (which holds the seed) to its whole component within `allowed`, by territory
// adjacency. Each sweep steps once per direction and folds the growth in at once, so a later
// direction of the same sweep already spreads the cells an earlier one added (fewer sweeps
// than growing every direction from the same frontier). Along the direction whose bit offset
// is +1 (one step along a grid column) a sweep fills whole runs at once by carry propagation:
// adding the seeds to the run mask A carries each seed through the rest of its run of A and
// into the first cell after it, so ((A + S) ^ A) holds every cell from a seed to one past its
// run's end. A holds the allowed cells that have a neighbour that way, so a run stops at the
// board edge. Only the fixed point is used, and it is the component, however it is reached.
// ND is the number of territory directions (0: read g.num_tdirs).
template <int NW, int ND>
RR_HD inline void bb_flood_n(const Geometry& g, BB& comp, const BB& allowed) {
  const int nd = ND ? ND : g.num_tdirs;
  for (;;) {
    uint64_t changed = 0;
    for (int d = 0; d < nd; d++) {
      int off = g.bb_toff[d];
      const BB& tsrc = g.bb_tsrc[d];
      if (off == 1) {
        uint64_t carry = 0;
        for (int i = 0; i < NW; i++) {
          uint64_t a = allowed.w[i] & tsrc.w[i];
          uint64_t t = a + (comp.w[i] & tsrc.w[i]);
          uint64_t c1 = t < a;
          uint64_t sum = t + carry;
          carry = c1 | (uint64_t)(sum < t);
          uint64_t v = (sum ^ a) & allowed.w[i] & ~comp.w[i];
          comp.w[i] |= v;
          changed |= v;
        }
      } else if (off > 0) {
        for (uint64_t grew = 1; grew;) {  // step along d while the component grows
          grew = 0;
          for (int i = NW - 1; i >= 0; i--) {
            uint64_t v = (comp.w[i] & tsrc.w[i]) << off;
            if (i > 0) v |= (comp.w[i - 1] & tsrc.w[i - 1]) >> (64 - off);
            v &= allowed.w[i] & ~comp.w[i];
            comp.w[i] |= v;
            grew |= v;
          }
          changed |= grew;
        }
      } else {
        int k = -off;
        for (uint64_t grew = 1; grew;) {
          grew = 0;
          for (int i = 0; i < NW; i++) {
            uint64_t v = (comp.w[i] & tsrc.w[i]) >> k;
            if (i + 1 < NW) v |= (comp.w[i + 1] & tsrc.w[i + 1]) << (64 - k);
            v &= allowed.w[i] & ~comp.w[i];
            comp.w[i] |= v;
            grew |= v;
          }
          changed |= grew;
        }
      }
    }
    if (!changed) return;
  }
}

// The component fill for a board whose territory directions have the bit offsets OFF... (checked
// against the geometry before use), over NW words: each pass grows the component along every
// direction by jumps of 1, 2, ..., 2^(LV-1) cells (pro[d][k]: the cells a jump of 2^k cells along
// d may enter, every cell of the jump allowed and entered from its on-board neighbour), until a
// pass adds nothing. The shift amounts are constants, so a shift is a few word operations and no
// branch; bb_flood_n shifts by amounts read from the geometry. Same fixpoint: the component.
template <int NW, int K>
RR_HD inline void shift_words(const uint64_t* x, uint64_t* out) {  // out = x shifted by K bits (K > 0: up)
  constexpr int A = K > 0 ? K : -K, Q = A / 64, R = A % 64;
  for (int i = 0; i < NW; i++) {
    uint64_t v = 0;
    if constexpr (K > 0) {
      if (i - Q >= 0) v = x[i - Q] << R;
      if constexpr (R != 0)
        if (i - Q - 1 >= 0) v |= x[i - Q - 1] >> (64 - R);
    } else {
      if (i + Q < NW) v = x[i + Q] >> R;
      if constexpr (R != 0)
        if (i + Q + 1 < NW) v |= x[i + Q + 1] << (64 - R);
    }
    out[i] = v;
  }
}

template <int NW, int LV, int... OFF>
struct FloodN {
  static constexpr int ND = sizeof...(OFF);
  uint64_t pro[ND][LV][NW];

  RR_HD static bool applies(const Geometry& g) {
    const int offs[ND] = {OFF...};
    if (g.bb_words != NW || g.num_tdirs != ND) return false;
    for (int d = 0; d < ND; d++)
      if (g.bb_toff[d] != offs[d]) return false;
    return true;
  }

  template <int D, int O>
  RR_HD void init_one(const uint64_t* allowed, const uint64_t* src) {
    uint64_t t[NW];
    shift_words<NW, O>(src, t);
    for (int i = 0; i < NW; i++) pro[D][0][i] = allowed[i] & t[i];
    init_level<D, O, 1>();
  }
  template <int D, int O, int L>
  RR_HD void init_level() {
    if constexpr (L < LV) {
      uint64_t t[NW];
      shift_words<NW, O * (1 << (L - 1))>(pro[D][L - 1], t);
      for (int i = 0; i < NW; i++) pro[D][L][i] = pro[D][L - 1][i] & t[i];
      init_level<D, O, L + 1>();
    }
  }
  template <int D, int O, int... REST>
  RR_HD void init_all(const Geometry& g, const uint64_t* allowed) {
    init_one<D, O>(allowed, g.bb_tsrc[D].w);
    if constexpr (sizeof...(REST) > 0) init_all<D + 1, REST...>(g, allowed);
  }
  RR_HD void init(const Geometry& g, const BB& allowed) { init_all<0, OFF...>(g, allowed.w); }

  template <int D, int O, int L>
  RR_HD void fill_level(uint64_t* comp) const {
    if constexpr (L < LV) {
      uint64_t t[NW];
      shift_words<NW, O * (1 << L)>(comp, t);
      for (int i = 0; i < NW; i++) comp[i] |= pro[D][L][i] & t[i];
      fill_level<D, O, L + 1>(comp);
    }
  }
  template <int D, int O, int... REST>
  RR_HD void fill_all(uint64_t* comp) const {
    fill_level<D, O, 0>(comp);
    if constexpr (sizeof...(REST) > 0) fill_all<D + 1, REST...>(comp);
  }
  // The component of comp's cells, in place.
  RR_HD void flood(BB& comp) const {
    for (;;) {
      uint64_t before[NW];
      for (int i = 0; i < NW; i++) before[i] = comp.w[i];
      fill_all<0, OFF...>(comp.w);
      uint64_t diff = 0;
      for (int i = 0; i < NW; i++) diff |= comp.w[i] ^ before[i];
      if (!diff) return;
    }
  }
};

// The four boards' layouts (geometry_build.h). LV, the longest jump, is what costs fewest
// instructions per game of random self-play (callgrind, LV 1 to 5 tried): single steps on the
// small boards, jumps of up to 2 cells on the big ones.
using FloodSquare8 = FloodN<1, 1, 1, 8, -1, -8>;
using FloodHex8 = FloodN<2, 1, 9, 8, -1, -9, -8, 1>;
using FloodSquare19 = FloodN<6, 2, 1, 19, -1, -19>;
using FloodHexagonal = FloodN<10, 2, 25, 24, -1, -25, -24, 1>;

// Boards with no constant-shift fill: applies() is false, so the scan takes bb_flood_n.
struct NoFloodN {
  RR_HD static bool applies(const Geometry&) { return false; }
  RR_HD void init(const Geometry&, const BB&) {}
  RR_HD void flood(BB&) const {}
};

// The fill for a scan with NW words and ND directions, when the geometry has the expected layout.
template <int NW, int ND>
struct FloodFor {
  using type = NoFloodN;
};
template <>
struct FloodFor<1, 4> {
  using type = FloodSquare8;
};
template <>
struct FloodFor<2, 6> {
  using type = FloodHex8;
};
template <>
struct FloodFor<6, 4> {
  using type = FloodSquare19;
};
template <>
struct FloodFor<BB_WORDS, 0> {
  using type = FloodHexagonal;
};

template <int NW>
RR_HD inline bool bb_meets(const BB& a, const BB& b) {
  uint64_t x = 0;
  for (int i = 0; i < NW; i++) x |= a.w[i] & b.w[i];
  return x != 0;
}

template <int NW>
RR_HD inline int bb_count_n(const BB& a, const BB& b) {
  int n = 0;
  for (int i = 0; i < NW; i++) n += popcount64(a.w[i] & b.w[i]);
  return n;
}

template <int NW>
RR_HD inline int bb_lowest_n(const BB& b) {
  for (int i = 0; i < NW; i++)
    if (b.w[i]) return i * 64 + ctz64(b.w[i]);
  return -1;
}

// Detect every region the reference lists, with per-region counts for player `mover`: one
// pass per marker colour in order of first appearance, then the collapsed-only pass (0);
// components are seeded in cell enumeration order. With stop_at_payable, stop at the first
// region the mover can pay for and return true.
template <int NW, int ND>
RR_HD RR_DEVICE_NOINLINE bool scan_regions_n(const Geometry& g, const State& s, uint8_t mover, RegionScan& out,
                                             bool stop_at_payable) {
  out.n = 0;
  unsigned active = 0;
  for (int p = 1; p <= s.num_players; p++)
    if (s.board_rings[p] > 0) active |= 1u << p;
  if (!active) return false;
  int n_active = popcount8(active);
  bool rec = s.turn_used_recovery != 0;
  // Nothing can be paid for without a stack to pay with (outside the region, so anywhere).
  if (stop_at_payable && !rec && s.ctrl_stacks[mover] <= 0) return false;
  // Masks: collapsed cells, markers per colour, stacks per controller, mover-buried stacks.
  BB collapsed, markers[MAX_PLAYERS + 1], ctrl[MAX_PLAYERS + 1], buried;
  for (int i = 0; i < NW; i++) buried.w[i] = markers[0].w[i] = 0;  // pass 0 has no marker walls
#if RR_HOST_SSE2
  scan_masks_sse2<NW>(g, s, s.num_players, ctrl, markers, collapsed);
#else
  scan_masks_lists<NW>(g, s, s.num_players, ctrl, markers, collapsed);
#endif
  // The passes run over the marker colours in order of first appearance in the marker list: walk
  // it only until every colour on the board has been seen.
  uint8_t colours[MAX_PLAYERS];
  int n_colours = 0;
  unsigned present = 0, seen = 0;
  for (int p = 1; p <= s.num_players; p++)
    if (s.marker_count[p] > 0) present |= 1u << p;
  for (int c = s.m_head; c != NO_CELL && seen != present; c = s.m_next[c]) {
    unsigned bit = 1u << s.marker[c];
    if (!(seen & bit)) {
      seen |= bit;
      colours[n_colours++] = s.marker[c];
    }
  }
  int buried_total = 0;
  if (rec)
    for (int c = s.s_head; c != NO_CELL; c = s.s_next[c])
      if (stack_has_buried(s, c, mover)) {
        bb_set(buried, g.cell_bit[c]);
        buried_total++;
      }
  if (stop_at_payable && rec && buried_total == 0) return false;
  const bool floodn_layout = FloodFor<NW, ND>::type::applies(g);  // the layout its FloodN was written for
  // One component (lowest bit `bit`): is it a region the reference lists? 1: stop (a payable
  // region with stop_at_payable), 0: go on.
  auto judge = [&](const BB& comp, int bit, int pass) -> int {
    unsigned colours_inside = 0;
    for (int p = 1; p <= s.num_players; p++)
      if (bb_meets<NW>(comp, ctrl[p])) colours_inside |= 1u << p;
    int n_inside = popcount8(colours_inside);
    uint8_t controller;
    if (pass != 0) {
      if (n_inside >= n_active) return 0;
      controller = (uint8_t)pass;
    } else {
      if (n_inside != 1 || n_inside >= n_active) return 0;
      controller = 0;
      for (int p = 1; p <= MAX_PLAYERS; p++)
        if (colours_inside & (1u << p)) controller = (uint8_t)p;
    }
    int mover_ctrl = bb_count_n<NW>(comp, ctrl[mover]);
    int mover_buried = rec ? bb_count_n<NW>(comp, buried) : 0;
    if (stop_at_payable) return (rec ? buried_total - mover_buried > 0 : s.ctrl_stacks[mover] - mover_ctrl > 0) ? 1 : 0;
    if (out.n >= MAX_REGIONS) return 0;
    Region& r = out.r[out.n++];
    r.seed = g.bit_cell[bit];
    r.pass = (uint8_t)pass;
    r.controller = controller;
    r.size = (int16_t)bb_count_n<NW>(comp, comp);
    r.mover_ctrl_inside = (int16_t)mover_ctrl;
    r.mover_buried_inside = (int16_t)mover_buried;
    return 0;
  };
  for (int k = 0; k <= n_colours; k++) {
    int pass = k < n_colours ? colours[k] : 0;
    BB wall, allowed, remaining;
    uint64_t walls = 0;
    for (int i = 0; i < NW; i++) {
      wall.w[i] = collapsed.w[i] | markers[pass].w[i];
      walls |= wall.w[i];
      allowed.w[i] = g.bb_board.w[i] & ~wall.w[i];
      remaining.w[i] = allowed.w[i];
    }
    typename FloodFor<NW, ND>::type fill;
    bool have_fill = false;
    // The component of allowed cell `bit` (the lowest of `remaining`), taken out of `remaining`.
    auto component = [&](int bit, BB& comp) {
      if (walls == 0) {
        comp = allowed;  // no walls: the whole board, which is connected
      } else {
        for (int i = 0; i < NW; i++) comp.w[i] = 0;
        bb_set(comp, bit);
        if (floodn_layout) {
          if (!have_fill) {
            fill.init(g, allowed);
            have_fill = true;
          }
          fill.flood(comp);
        } else {
          bb_flood_n<NW, ND>(g, comp, allowed);
        }
      }
      for (int i = 0; i < NW; i++) remaining.w[i] &= ~comp.w[i];
    };
#if !defined(__CUDA_ARCH__)
    if constexpr (NW <= PassComponents::CACHE_WORDS) {
      PassComponents& pc = out.cache[pass];
      bool hit = pc.geometry == &g;
      for (int i = 0; i < NW && hit; i++) hit = pc.walls[i] == wall.w[i];
      if (!hit) {  // flood every component now (a stop below would have skipped the rest)
        pc.geometry = nullptr;
        int n = 0;
        for (int bit = bb_lowest_n<NW>(remaining); bit >= 0; bit = bb_lowest_n<NW>(remaining), n++) {
          BB comp;
          component(bit, comp);
          if (n < PassComponents::MAX_COMPS)
            for (int i = 0; i < NW; i++) pc.comp[n][i] = comp.w[i];
        }
        if (n <= PassComponents::MAX_COMPS) {
          pc.geometry = &g;
          pc.n = n;
          for (int i = 0; i < NW; i++) pc.walls[i] = wall.w[i];
        } else {  // too many to keep: judge them the uncached way below (the fill stays valid)
          for (int i = 0; i < NW; i++) remaining.w[i] = allowed.w[i];
        }
      }
      if (pc.geometry == &g) {
        for (int j = 0; j < pc.n; j++) {
          BB comp;
          for (int i = 0; i < NW; i++) comp.w[i] = pc.comp[j][i];
          if (judge(comp, bb_lowest_n<NW>(comp), pass)) return true;
        }
        continue;
      }
    }
#endif
    for (int bit = bb_lowest_n<NW>(remaining); bit >= 0; bit = bb_lowest_n<NW>(remaining)) {
      BB comp;
      component(bit, comp);
      if (judge(comp, bit, pass)) return true;
    }
  }
  return false;
}

RR_HD inline bool scan_regions(const Geometry& g, const State& s, uint8_t mover, RegionScan& out,
                               bool stop_at_payable = false) {
  // The four boards: square8 1 word, hex8 2, square19 6, hexagonal 10; 4 or 6 directions.
  int w = g.bb_words, nd = g.num_tdirs;
  if (w == 1 && nd == 4) return scan_regions_n<1, 4>(g, s, mover, out, stop_at_payable);
  if (w == 2 && nd == 6) return scan_regions_n<2, 6>(g, s, mover, out, stop_at_payable);
  if (w == 6 && nd == 4) return scan_regions_n<6, 4>(g, s, mover, out, stop_at_payable);
  return scan_regions_n<BB_WORDS, 0>(g, s, mover, out, stop_at_payable);
}

RR_HD inline int count_buried_stacks(const State& s, uint8_t p) {
  int n = 0;
  for (int c = s.s_head; c != NO_CELL; c = s.s_next[c])
    if (stack_has_buried(s, c, p)) n++;
  return n;
}

// Can `mover` pay for region r (RULES.md 6.5.3)?
RR_HD inline bool region_payable(const State& s, const Region& r, uint8_t mover, bool recovery_ctx, int buried_total) {
  if (recovery_ctx) return buried_total - r.mover_buried_inside > 0;
  return s.ctrl_stacks[mover] - r.mover_ctrl_inside > 0;
}

RR_HD inline bool any_processable_region(const Geometry& g, const State& s, uint8_t mover, RegionScan& scratch) {
  return scan_regions(g, s, mover, scratch, true);
}

// Cells of the region with the given seed and pass, in BFS order. Returns the count.
RR_HD inline int region_cells(const Geometry& g, const State& s, int seed, int pass, int16_t* cells) {
  int16_t comp[MAX_CELLS];
  for (int c = 0; c < g.num_cells; c++) comp[c] = -1;
  if (!region_cell_ok(s, seed, pass)) return 0;
  return region_flood(g, s, seed, pass, comp, 0, cells);
}

// Border markers of a region (RULES.md 6.5.4): markers of any colour territory-adjacent to the
// region, expanded through marker cells by (x,y) Moore steps (none on hexagonal).
RR_HD inline int region_border(const Geometry& g, const State& s, const uint8_t* in_region, const int16_t* cells,
                               int n_cells, int16_t* border) {
  uint8_t mark[MAX_CELLS];
  for (int c = 0; c < g.num_cells; c++) mark[c] = 0;
  int nb = 0;
  for (int i = 0; i < n_cells; i++) {
    int c = cells[i];
    for (int d = 0; d < g.num_tdirs; d++) {
      int x = g.tnbr[c][d];
      if (x == NO_CELL || in_region[x] || mark[x] || !s.marker[x]) continue;
      mark[x] = 1;
      border[nb++] = (int16_t)x;
    }
  }
  for (int head = 0; head < nb; head++) {
    int c = border[head];
    for (int d = 0; d < g.num_moore; d++) {
      int x = g.moore[c][d];
      if (x == NO_CELL || in_region[x] || mark[x] || !s.marker[x]) continue;
      mark[x] = 1;
      border[nb++] = (int16_t)x;
    }
  }
  return nb;
}

// Process region (seed, pass) for player p (RULES.md 6.5.5). The self-elimination is separate.
RR_HD inline void apply_region(const Geometry& g, State& s, int seed, int pass, uint8_t p) {
  int16_t cells[MAX_CELLS];
  int n = region_cells(g, s, seed, pass, cells);
  uint8_t in_region[MAX_CELLS];
  for (int c = 0; c < g.num_cells; c++) in_region[c] = 0;
  for (int i = 0; i < n; i++) in_region[cells[i]] = 1;
  int16_t border[MAX_CELLS];
  int nb = region_border(g, s, in_region, cells, n, border);
  for (int i = 0; i < n; i++) {
    int c = cells[i];
    if (s.top[c] != NO_CELL) stack_eliminate_top(s, c, s.height[c], p);
    cell_collapse(s, c, p);
  }
  for (int i = 0; i < nb; i++) cell_collapse(s, border[i], p);
  s.terr[p] += (int16_t)(n + nb);
}

}  // namespace rr

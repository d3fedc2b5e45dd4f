// Gumbel search over exact game states (Gumbel MuZero, Danihelka et al. 2022, "Policy improvement
// by planning with Gumbel"), host/device code. docs/search.md has the algorithm and its parameters.
//
// One tree per game. The tree keeps its root State and a fixed pool of nodes that the caller
// allocates once (no heap, no exceptions, no std containers on the search path); the state of a
// node is never stored: a simulation copies the root into a work state and replays the moves on
// the path, which with this engine is cheaper than keeping a 10 KB state per node.
//
// A tree moves through three calls, so that a batch of trees can share one network call:
//   search_select  walks one simulation down to a leaf and expands it (its children are the
//                  distinct playable canonical actions of the leaf state, export/action_space.h);
//                  the leaf state is left in the work state, for the caller to evaluate;
//   search_apply   writes the leaf's evaluation back (logits over the action space, or none for
//                  uniform priors, and a value per seat) and backs the value up to the root;
//   repeat until the tree is done; the root's first evaluation is the first "leaf".
// Root: Gumbel top-k sampling of m = min(top_k, actions) candidates, sequential halving of the
// simulation budget over them, and the final action = argmax of g + logit + sigma(completed Q)
// among the most visited candidates. Below the root: the paper's deterministic rule, argmax of
// pi'(a) - N(a) / (1 + sum N), with pi' = softmax(logit + sigma(completed Q)).
// Values are per seat (index p - 1), so the search serves 2-4 players: every node's Q is read
// from the point of view of the player to move at its parent.
#pragma once
#include "export/action_space.h"
#include "export/features.h"
#include "selfplay/policy.h"
#include "selfplay/rng.h"
#if !defined(__CUDACC_RTC__)
#include <math.h>
#endif

namespace rr {

constexpr int SEARCH_MAX_TOPK = 256;  // largest top_k (the candidates live in the tree header)
constexpr float SEARCH_LOGIT_CLAMP = 1.0e4f;

struct SearchParams {
  int32_t simulations;  // n: simulations after the root's evaluation
  int32_t top_k;        // m: candidates sampled at the root (1 .. SEARCH_MAX_TOPK)
  float c_visit;        // sigma(q) = (c_visit + max_b N(b)) * c_scale * q, q rescaled to [0, 1]
  float c_scale;
  float gumbel_scale;   // 1 = sample Gumbel noise (self-play); 0 = deterministic (evaluation)
};

enum SearchNodeFlag : uint8_t {
  SN_EVALUATED = 1,  // net_value holds this node's evaluation (or its outcome when terminal)
  SN_TERMINAL = 2,   // the game is over in this node's state
  SN_EXPANDED = 4,   // children are in the pool
};

// One node = one edge from its parent. Children of a node are contiguous in the pool.
struct SearchNode {
  Move move;                     // the move from the parent (unused at the root)
  int32_t action;                // canonical action index of `move` (-1 at the root)
  int32_t parent;                // -1 at the root
  int32_t first_child;
  int32_t num_children;
  int32_t visits;
  float logit;                   // the parent's evaluation's logit for this action (clamped)
  float prior;                   // softmax of the logits over the siblings
  float value_sum[MAX_PLAYERS];  // backed-up values by seat
  float net_value[MAX_PLAYERS];  // this node's own evaluation by seat (terminal: the outcome)
  uint8_t mover;                 // player to move in this node's state (0: not evaluated yet / over)
  uint8_t flags;
};

enum SearchStatus : uint8_t {
  SS_NEED_ROOT = 0,  // the root awaits its evaluation
  SS_RUNNING = 1,
  SS_DONE = 2,
};

// What search_select left in the work state.
enum SearchSelect : uint8_t {
  SEL_LEAF = 0,      // a leaf to evaluate (its state is in the work state)
  SEL_BACKED_UP = 1, // the simulation ended in a known terminal node and is already backed up
  SEL_DONE = 2,      // the tree needs nothing more
};

struct SearchTree {
  State root;
  Rng rng;
  SearchNode* pool;
  int32_t capacity, used;
  int32_t sims_done;
  int32_t considered;             // m = min(top_k, root actions)
  int32_t cand[SEARCH_MAX_TOPK];  // root children (node ids) sampled by Gumbel top-k
  float gumbel[SEARCH_MAX_TOPK];  // their Gumbel noise
  int32_t leaf;                   // node awaiting evaluation, -1 none
  int32_t chosen;                 // chosen root child (node id), -1 none
  uint8_t status;
  uint8_t pool_full;              // a leaf could not be expanded for lack of nodes (reported)
};

// Per-thread work space (the caller's): the simulation's state and the legal-move list.
struct SearchWork {
  State state;
  Scratch sc;
  MoveList list;
};

RR_HD inline float search_exp(float x) { return expf(x); }
RR_HD inline float search_log(float x) { return logf(x); }

RR_HD inline float clamp_logit(float x) {
  if (!(x == x)) return 0.0f;  // NaN: no preference
  return x > SEARCH_LOGIT_CLAMP ? SEARCH_LOGIT_CLAMP : (x < -SEARCH_LOGIT_CLAMP ? -SEARCH_LOGIT_CLAMP : x);
}

RR_HD inline void search_init_node(SearchNode& n, const Move& m, int32_t action, int32_t parent) {
  n.move = m;
  n.action = action;
  n.parent = parent;
  n.first_child = -1;
  n.num_children = 0;
  n.visits = 0;
  n.logit = 0.0f;
  n.prior = 0.0f;
  for (int p = 0; p < MAX_PLAYERS; p++) n.value_sum[p] = n.net_value[p] = 0.0f;
  n.mover = 0;
  n.flags = 0;
}

// Start a search from `root` (pool: `capacity` nodes the caller owns; at least 1 + MAX_MOVES so
// the root can always be expanded).
RR_HD inline void search_reset(SearchTree& t, SearchNode* pool, int32_t capacity, const State& root, Rng rng) {
  t.root = root;
  t.rng = rng;
  t.pool = pool;
  t.capacity = capacity;
  t.used = 1;
  t.sims_done = 0;
  t.considered = 0;
  t.leaf = -1;
  t.chosen = -1;
  t.status = SS_NEED_ROOT;
  t.pool_full = 0;
  search_init_node(pool[0], make_move(0, 0), -1, -1);
}

// ---- completed Q and sigma (Danihelka et al. 2022, appendix D) ------------------------------

// Per-node summary of the children that the completed-Q transform needs; no per-child arrays,
// so it fits a GPU thread: every per-child quantity is recomputed from it on the fly.
struct QStats {
  float v_mix;      // the node's value estimate mixed with its visited children's Q
  float q_min, q_max;  // range of the completed Q over the children (for the [0, 1] rescale)
  float scale;      // (c_visit + max N) * c_scale
  int32_t sum_n;
};

// Q of child c from the point of view of `mover` (the player to move at the parent).
RR_HD inline float child_q(const SearchNode& c, int mover) { return c.value_sum[mover - 1] / (float)c.visits; }

RR_HD inline QStats q_stats(const SearchNode* pool, const SearchNode& n, const SearchParams& P) {
  QStats s;
  const int mover = n.mover;
  float pi_q = 0.0f, pi_vis = 0.0f;
  int32_t max_n = 0;
  s.sum_n = 0;
  for (int i = 0; i < n.num_children; i++) {
    const SearchNode& c = pool[n.first_child + i];
    if (c.visits <= 0) continue;
    s.sum_n += c.visits;
    if (c.visits > max_n) max_n = c.visits;
    pi_q += c.prior * child_q(c, mover);
    pi_vis += c.prior;
  }
  const float v_hat = n.net_value[mover - 1];
  s.v_mix = v_hat;
  if (s.sum_n > 0) {
    // pi_vis > 0 unless every visited prior underflowed to 0: then the plain mean of the Qs
    float weighted = 0.0f;
    if (pi_vis > 0.0f) {
      weighted = pi_q / pi_vis;
    } else {
      for (int i = 0; i < n.num_children; i++) {
        const SearchNode& c = pool[n.first_child + i];
        if (c.visits > 0) weighted += child_q(c, mover) * (float)c.visits;
      }
      weighted /= (float)s.sum_n;
    }
    s.v_mix = (v_hat + (float)s.sum_n * weighted) / (1.0f + (float)s.sum_n);
  }
  s.q_min = s.q_max = s.v_mix;
  for (int i = 0; i < n.num_children; i++) {
    const SearchNode& c = pool[n.first_child + i];
    if (c.visits <= 0) continue;
    float q = child_q(c, mover);
    if (q < s.q_min) s.q_min = q;
    if (q > s.q_max) s.q_max = q;
  }
  s.scale = (P.c_visit + (float)max_n) * P.c_scale;
  return s;
}

// sigma(completed Q) of child c.
RR_HD inline float child_sigma(const SearchNode& c, int mover, const QStats& s) {
  float q = c.visits > 0 ? child_q(c, mover) : s.v_mix;
  float range = s.q_max - s.q_min;
  float q01 = range > 1e-8f ? (q - s.q_min) / range : 0.0f;
  return s.scale * q01;
}

// Improved policy pi' = softmax(logit + sigma) over n's children: writes the probabilities in
// child order (out may be null: returns the log-normaliser only).
RR_HD inline float improved_policy_norm(const SearchNode* pool, const SearchNode& n, const QStats& s) {
  float mx = -3.0e38f;
  for (int i = 0; i < n.num_children; i++) {
    const SearchNode& c = pool[n.first_child + i];
    float z = c.logit + child_sigma(c, n.mover, s);
    if (z > mx) mx = z;
  }
  float sum = 0.0f;
  for (int i = 0; i < n.num_children; i++) {
    const SearchNode& c = pool[n.first_child + i];
    sum += search_exp(c.logit + child_sigma(c, n.mover, s) - mx);
  }
  return mx + search_log(sum);
}

RR_HD inline void improved_policy(const SearchNode* pool, const SearchNode& n, const SearchParams& P, float* out) {
  QStats s = q_stats(pool, n, P);
  float lz = improved_policy_norm(pool, n, s);
  for (int i = 0; i < n.num_children; i++) {
    const SearchNode& c = pool[n.first_child + i];
    out[i] = search_exp(c.logit + child_sigma(c, n.mover, s) - lz);
  }
}

// ---- sequential halving ----------------------------------------------------------------------

RR_HD inline int ceil_log2(int m) {
  int k = 0;
  while ((1 << k) < m) k++;
  return k;
}

// The visit count that simulation i (0-based) of n gives to a candidate, with m candidates:
// phase after phase, every remaining candidate gets max(1, n / (ceil(log2 m) * remaining))
// more visits, then the better half stays (never fewer than 2). Inside a phase the remaining
// candidates have equal counts, so the schedule is a function of (i, m, n) alone.
RR_HD inline int halving_visit(int i, int m, int n) {
  if (m <= 1) return i;
  const int log2m = ceil_log2(m);
  int nc = m, v = 0, pos = 0;
  for (;;) {
    int extra = n / (log2m * nc);
    if (extra < 1) extra = 1;
    const int len = extra * nc;
    if (i < pos + len) return v + (i - pos) / nc;
    pos += len;
    v += extra;
    nc = nc / 2 < 2 ? 2 : nc / 2;
  }
}

// g + logit + sigma of root candidate k.
RR_HD inline float root_score(const SearchTree& t, int k, const QStats& s) {
  const SearchNode& c = t.pool[t.cand[k]];
  return t.gumbel[k] + c.logit + child_sigma(c, t.pool[0].mover, s);
}

// The root child for simulation `sims_done`: among candidates whose visits equal the
// schedule's count, the best score (the fewest visits when none matches).
RR_HD inline int32_t root_pick(const SearchTree& t, const SearchParams& P) {
  const QStats s = q_stats(t.pool, t.pool[0], P);
  const int want = halving_visit(t.sims_done, t.considered, P.simulations);
  int best = -1, fewest = 0;
  float best_score = 0.0f;
  for (int k = 0; k < t.considered; k++) {
    const SearchNode& c = t.pool[t.cand[k]];
    if (c.visits < t.pool[t.cand[fewest]].visits) fewest = k;
    if (c.visits != want) continue;
    float sc = root_score(t, k, s);
    if (best < 0 || sc > best_score) {
      best = k;
      best_score = sc;
    }
  }
  return t.cand[best >= 0 ? best : fewest];
}

// The final action: the best score among the most visited candidates.
RR_HD inline int32_t root_final(const SearchTree& t, const SearchParams& P) {
  const QStats s = q_stats(t.pool, t.pool[0], P);
  int32_t most = 0;
  for (int k = 0; k < t.considered; k++)
    if (t.pool[t.cand[k]].visits > most) most = t.pool[t.cand[k]].visits;
  int best = -1;
  float best_score = 0.0f;
  for (int k = 0; k < t.considered; k++) {
    if (t.pool[t.cand[k]].visits != most) continue;
    float sc = root_score(t, k, s);
    if (best < 0 || sc > best_score) {
      best = k;
      best_score = sc;
    }
  }
  return best >= 0 ? t.cand[best] : -1;
}

// Below the root: argmax of pi'(a) - N(a) / (1 + sum N); ties go to the first child.
RR_HD inline int32_t interior_pick(const SearchNode* pool, const SearchNode& n, const SearchParams& P) {
  const QStats s = q_stats(pool, n, P);
  const float lz = improved_policy_norm(pool, n, s);
  int32_t best = -1;
  float best_score = 0.0f;
  for (int i = 0; i < n.num_children; i++) {
    const SearchNode& c = pool[n.first_child + i];
    float sc = search_exp(c.logit + child_sigma(c, n.mover, s) - lz) - (float)c.visits / (1.0f + (float)s.sum_n);
    if (best < 0 || sc > best_score) {
      best = n.first_child + i;
      best_score = sc;
    }
  }
  return best;
}

// Gumbel(0, 1) noise from the tree's stream: -log(-log u), u in (0, 1).
RR_HD inline float gumbel_noise(Rng& r) {
  float u = ((float)(r.next() >> 40) + 0.5f) * (1.0f / 16777216.0f);
  return -search_log(-search_log(u));
}

// After the root's evaluation: sample the top-k candidates by g + logit (kept sorted, best
// first; insertion into at most SEARCH_MAX_TOPK slots, no per-child array).
RR_HD inline void root_sample(SearchTree& t, const SearchParams& P) {
  const SearchNode& r = t.pool[0];
  int m = P.top_k < r.num_children ? P.top_k : r.num_children;
  if (m > SEARCH_MAX_TOPK) m = SEARCH_MAX_TOPK;
  int have = 0;
  for (int i = 0; i < r.num_children; i++) {
    const float g = P.gumbel_scale > 0.0f ? P.gumbel_scale * gumbel_noise(t.rng) : 0.0f;
    const float key = g + t.pool[r.first_child + i].logit;
    int pos = have;
    while (pos > 0 && key > t.gumbel[pos - 1] + t.pool[t.cand[pos - 1]].logit) pos--;
    if (pos >= m) continue;
    int last = have < m ? have : m - 1;
    for (int j = last; j > pos; j--) {
      t.cand[j] = t.cand[j - 1];
      t.gumbel[j] = t.gumbel[j - 1];
    }
    t.cand[pos] = r.first_child + i;
    t.gumbel[pos] = g;
    if (have < m) have++;
  }
  t.considered = m;
}

RR_HD inline void search_finish(SearchTree& t, const SearchParams& P) {
  t.chosen = t.pool[0].num_children > 0 ? root_final(t, P) : -1;
  t.status = SS_DONE;
  t.leaf = -1;
}

// ---- expansion -------------------------------------------------------------------------------

// Does a move of this type share its canonical index with another legal move of the surface?
RR_HD inline bool may_share_action(uint8_t type) {
  return type == MT_PROCESS_LINE || type == MT_CHOOSE_LINE_OPTION || type == MT_CHOOSE_TERRITORY_OPTION;
}

// Children of node `id` from the playable moves of `st` (one per canonical action, the first in
// surface order). False (and no children) when they do not fit the pool or the surface overflowed.
RR_HD inline bool search_expand(const Geometry& g, const ActionSpace& as, SearchTree& t, int32_t id, State& st,
                                SearchWork& w) {
  legal_moves(g, st, w.sc, w.list);
  if (w.list.overflow) return false;
  const int32_t first = t.used;
  int32_t k = 0;
  for (int i = 0; i < w.list.n; i++) {
    const Move& m = w.list.m[i];
    if (reference_rejects(g, st, m)) continue;
    const int32_t a = canonical_action_index(g, as, st, m, w.list);
    if (a < 0) continue;
    bool dup = false;
    if (may_share_action(m.type))
      for (int j = 0; j < k && !dup; j++) dup = t.pool[first + j].action == a;
    if (dup) continue;
    if (first + k >= t.capacity) {
      t.pool_full = 1;
      return false;
    }
    search_init_node(t.pool[first + k], m, a, id);
    k++;
  }
  if (k == 0) return false;
  t.used = first + k;
  SearchNode& n = t.pool[id];
  n.first_child = first;
  n.num_children = k;
  n.flags |= SN_EXPANDED;
  return true;
}

RR_HD inline void search_backup(SearchTree& t, int32_t id, const float* v /* by seat */) {
  for (int32_t i = id; i >= 0; i = t.pool[i].parent) {
    SearchNode& n = t.pool[i];
    n.visits++;
    for (int p = 0; p < MAX_PLAYERS; p++) n.value_sum[p] += v[p];
  }
}

// Walk one simulation from the root to a leaf (see the file comment). The leaf's state is left
// in w.state; a terminal leaf is backed up here (SEL_BACKED_UP).
RR_HD inline uint8_t search_select(const Geometry& g, const ActionSpace& as, SearchTree& t, const SearchParams& P,
                                   SearchWork& w) {
  if (t.status == SS_DONE) return SEL_DONE;
  w.state = t.root;
  int32_t id = 0;
  if (t.status == SS_RUNNING) {
    id = root_pick(t, P);
    step_unchecked(g, w.state, t.pool[id].move, w.sc);
    for (;;) {
      SearchNode& n = t.pool[id];
      if (!(n.flags & SN_EVALUATED) || !(n.flags & SN_EXPANDED)) break;
      id = interior_pick(t.pool, n, P);
      step_unchecked(g, w.state, t.pool[id].move, w.sc);
    }
  }
  SearchNode& leaf = t.pool[id];
  if (leaf.flags & SN_TERMINAL) {
    search_backup(t, id, leaf.net_value);
    t.sims_done++;
    if (t.sims_done >= P.simulations) search_finish(t, P);
    return SEL_BACKED_UP;
  }
  if (w.state.status != ST_ACTIVE) {
    float v[MAX_PLAYERS + 1];
    outcome_values(w.state, v);
    for (int p = 0; p < MAX_PLAYERS; p++) leaf.net_value[p] = v[p + 1];
    leaf.flags |= SN_EVALUATED | SN_TERMINAL;
    leaf.mover = 0;
    if (id == 0) {  // the game is already over at the root: nothing to search
      search_finish(t, P);
      return SEL_DONE;
    }
    search_backup(t, id, leaf.net_value);
    t.sims_done++;
    if (t.sims_done >= P.simulations) search_finish(t, P);
    return SEL_BACKED_UP;
  }
  leaf.mover = w.state.current;
  // A node evaluated before but not expanded (no room in the pool) is evaluated again as a leaf.
  if (!(leaf.flags & (SN_EXPANDED | SN_EVALUATED))) search_expand(g, as, t, id, w.state, w);
  t.leaf = id;
  return SEL_LEAF;
}

// Write back the evaluation of the pending leaf: `logits` over the whole action space (null:
// uniform priors) and `value` by seat. Backs it up and advances the tree.
RR_HD inline void search_apply(SearchTree& t, const SearchParams& P, const float* logits, const float* value) {
  const int32_t id = t.leaf;
  if (id < 0) return;
  SearchNode& n = t.pool[id];
  if (!(n.flags & SN_EVALUATED)) {
    float mx = -3.0e38f;
    for (int i = 0; i < n.num_children; i++) {
      SearchNode& c = t.pool[n.first_child + i];
      c.logit = logits ? clamp_logit(logits[c.action]) : 0.0f;
      if (c.logit > mx) mx = c.logit;
    }
    float sum = 0.0f;
    for (int i = 0; i < n.num_children; i++) sum += search_exp(t.pool[n.first_child + i].logit - mx);
    for (int i = 0; i < n.num_children; i++) {
      SearchNode& c = t.pool[n.first_child + i];
      c.prior = search_exp(c.logit - mx) / sum;
    }
    for (int p = 0; p < MAX_PLAYERS; p++) n.net_value[p] = value[p];
    n.flags |= SN_EVALUATED;
  }
  t.leaf = -1;
  if (id == 0 && t.status == SS_NEED_ROOT) {
    // the root's own evaluation is not a simulation
    for (int p = 0; p < MAX_PLAYERS; p++) n.value_sum[p] += value[p];
    n.visits = 1;
    if (n.num_children == 0) {
      search_finish(t, P);
      return;
    }
    root_sample(t, P);
    t.status = SS_RUNNING;
    if (P.simulations <= 0 || n.num_children == 1) search_finish(t, P);
    return;
  }
  search_backup(t, id, value);
  t.sims_done++;
  if (t.sims_done >= P.simulations) search_finish(t, P);
}

// Value of a leaf from a network's output for a state of n players with `mover` to move: `v` is
// either one number for the mover (nv == 1: the other seats get -v / (n - 1), a zero-sum split)
// or one per seat slot relative to the mover (nv == MAX_PLAYERS, slot k = the k-th seat after the
// mover, as in export/features.h). Writes by absolute seat, clamped to [-1, 1] (NaN: 0).
RR_HD inline void value_by_seat(int n, int mover, const float* v, int nv, float* out) {
  for (int p = 0; p < MAX_PLAYERS; p++) out[p] = 0.0f;
  for (int p = 1; p <= n; p++) {
    int slot = (p - mover + n) % n;
    float x;
    if (nv == 1) x = slot == 0 ? v[0] : -v[0] / (float)(n - 1);
    else x = v[slot];
    if (!(x == x)) x = 0.0f;
    out[p - 1] = x > 1.0f ? 1.0f : (x < -1.0f ? -1.0f : x);
  }
}

// The root's value for its player to move: mean backed-up value (root evaluation included).
RR_HD inline float search_root_value(const SearchTree& t) {
  const SearchNode& r = t.pool[0];
  if (r.visits <= 0 || r.mover == 0) return 0.0f;  // never evaluated, or the game is over
  return r.value_sum[r.mover - 1] / (float)r.visits;
}

}  // namespace rr

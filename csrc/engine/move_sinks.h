// List-free outputs for the legal-move generator. A caller that needs only one move of the
// surface (or its size) runs the generator into one of these instead of filling a MoveList of
// MAX_MOVES moves (128 KB): that is how the GPU self-play kernel plays with no list per game.
// Each sink numbers the moves with ml_take, exactly as ml_push(MoveList&) would, so it sees
// the same moves at the same indices and sets `overflow` on the same push.
#pragma once
#include "defs.h"

namespace rr {

// The surface's size, and its first move (so move 0 needs no second pass).
struct CountSink {
  int n = 0;
  bool overflow = false;
  Move first;
  RR_HD friend void ml_clear(CountSink& k) {
    k.n = 0;
    k.overflow = false;
  }
  RR_HD friend void ml_push(CountSink& k, const Move& m) {
    if (ml_take(k.n, k.overflow) == 0) k.first = m;
  }
};

// Move number `want` of the surface (found stays false when the surface is shorter).
struct PickSink {
  int n = 0;
  bool overflow = false;
  int want = 0;
  bool found = false;
  Move m;
  RR_HD friend void ml_clear(PickSink& k) {
    k.n = 0;
    k.overflow = false;
    k.found = false;
  }
  RR_HD friend void ml_push(PickSink& k, const Move& m) {
    if (ml_take(k.n, k.overflow) == k.want) {
      k.m = m;
      k.found = true;
    }
  }
};

}  // namespace rr

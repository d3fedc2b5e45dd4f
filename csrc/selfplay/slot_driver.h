// The batch-driver step shared by the CUDA kernel and its host twin: play game `slot` of a
// batch into fixed-capacity output buffers (capacity max_moves per game). The kernel runs one
// slot per thread; the host twin runs the slots in a loop, so CI checks on the CPU exactly
// the code a GPU runs. Slots choose moves with no move list (StreamPicker), so a GPU game
// needs only its State and Scratch; CI compares them with the thread pool's list path.
#pragma once
#include "selfplay/game_driver.h"

namespace rr {

struct SlotBuffers {
  Move* moves;        // [games * max_moves]
  uint64_t* hashes;   // [games * max_moves]
  uint8_t* phases;    // [games * max_moves]
  uint8_t* players;   // [games * max_moves]
  int32_t* move_count;  // [games]
  uint8_t* winner;      // [games]
  uint8_t* reason;      // [games]
  uint8_t* capped;      // [games]
};

struct BufferRecorder {
  Move* moves;
  uint64_t* hashes;
  uint8_t* phases;
  uint8_t* players;
  int n;
  RR_HD bool wants_hash() const { return true; }
  RR_HD void step(const Move& m, uint64_t h, uint8_t phase, uint8_t player) {
    moves[n] = m;
    hashes[n] = h;
    phases[n] = phase;
    players[n] = player;
    n++;
  }
};

RR_HD inline void play_slot(const Geometry& g, State& s, Scratch& sc, uint64_t seed, int64_t index, int num_players,
                            uint8_t policy, int max_moves, const SlotBuffers& out, int slot) {
  size_t base = (size_t)slot * (size_t)max_moves;
  BufferRecorder rec{out.moves + base, out.hashes + base, out.phases + base, out.players + base, 0};
  bool finished = play_game(g, s, sc, StreamPicker{}, seed, (uint64_t)index, num_players, policy, max_moves, rec);
  out.move_count[slot] = s.move_count;
  out.winner[slot] = s.winner;
  out.reason[slot] = s.reason;
  out.capped[slot] = finished ? 0 : 1;
}

}  // namespace rr

// CUDA self-play kernel: one game per thread, each thread running the shared rules core
// through play_slot. Compiled at run time by NVRTC (through cupy) on GPU workers, and by nvcc
// in CI as a compile check. Per-thread working memory (state, scratch) lives in global arrays
// so large batches fit; there is no move list (play_slot chooses moves by streaming).
#include "selfplay/slot_driver.h"

extern "C" __global__ void rr_selfplay(const rr::Geometry* geometry, rr::State* states, rr::Scratch* scratch,
                                       unsigned long long seed, const long long* indices, int games,
                                       int num_players, int policy, int max_moves, rr::Move* moves,
                                       unsigned long long* hashes, unsigned char* phases, unsigned char* players,
                                       int* move_count, unsigned char* winner, unsigned char* reason,
                                       unsigned char* capped) {
  int slot = blockIdx.x * blockDim.x + threadIdx.x;
  if (slot >= games) return;
  rr::SlotBuffers out{moves, (uint64_t*)hashes, phases, players, move_count, winner, reason, capped};
  rr::play_slot(*geometry, states[slot], scratch[slot], seed, indices[slot], num_players, (uint8_t)policy, max_moves,
                out, slot);
}

// CUDA self-play kernel: one game per thread, each thread running the shared rules core
// through play_slot. Compiled at run time by NVRTC (through cupy) on GPU workers, and by nvcc
// in CI as a compile check. Per-thread working memory (state, scratch) lives in global arrays
// so large batches fit; there is no move list (play_slot chooses moves by streaming).
#include "selfplay/slot_driver.h"
#include "selfplay/layout.h"  // host/device layout guard (active when the launcher passes the layout)

// Optional occupancy hint, set by the launcher (-DRR_LAUNCH_BLOCK=64 -DRR_LAUNCH_MIN_BLOCKS=8):
// asks the compiler to fit that many blocks of that size per SM, i.e. to cap registers per
// thread at 65536 / (block * min_blocks). It travels in the PTX (.maxntid / .minnctapersm), so
// it holds when the driver JIT-compiles the PTX. Unset, the compiler chooses (150 registers on
// sm_90 with nvcc 13). Whether a cap is faster is measured by bench/gpu_bench.py.
#if defined(RR_LAUNCH_BLOCK) && defined(RR_LAUNCH_MIN_BLOCKS)
#define RR_SELFPLAY_BOUNDS __launch_bounds__(RR_LAUNCH_BLOCK, RR_LAUNCH_MIN_BLOCKS)
#else
#define RR_SELFPLAY_BOUNDS
#endif

extern "C" __global__ void RR_SELFPLAY_BOUNDS rr_selfplay(const rr::Geometry* geometry, rr::State* states, rr::Scratch* scratch,
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

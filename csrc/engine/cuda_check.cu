// Compile-only proof that the rules core is device code: a kernel that advances a batch of
// games with the same functions the host uses. CI compiles this with nvcc (no GPU needed).
#include "engine/engine.h"
// The production self-play kernel (run-time compiled by NVRTC on GPU workers) is part of this
// translation unit, so the compile check covers it too.
#include "selfplay/selfplay_kernel.cu"
// The batch-environment kernels likewise.
#include "selfplay/env_kernel.cu"

namespace {

__global__ void step_first_legal(const rr::Geometry* g, rr::State* states, rr::Scratch* scratch, rr::MoveList* lists,
                                 unsigned long long* hashes, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  rr::State& s = states[i];
  rr::legal_moves(*g, s, scratch[i], lists[i]);
  if (lists[i].n > 0) rr::step_unchecked(*g, s, lists[i].m[0], scratch[i]);
  hashes[i] = rr::state_hash(*g, s);
}

__global__ void init_games(const rr::Geometry* g, rr::State* states, int n, int players) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) rr::init_state(states[i], *g, players, false);
}

}  // namespace

// Host entry point so the kernels are referenced (and therefore compiled for the device).
void ringrift_cuda_check_launch(const rr::Geometry* g, rr::State* s, rr::Scratch* sc, rr::MoveList* l,
                                unsigned long long* h, int n) {
  init_games<<<(n + 63) / 64, 64>>>(g, s, n, 2);
  step_first_legal<<<(n + 63) / 64, 64>>>(g, s, sc, l, h, n);
}

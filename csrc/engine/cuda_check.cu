// Compile-only proof that the rules core is device code: a kernel that advances a batch of
// games with the same functions the host uses. CI compiles this with nvcc (no GPU needed).
#include "engine/engine.h"
// The production self-play kernel (run-time compiled by NVRTC on GPU workers) is part of this
// translation unit, so the compile check covers it too.
#include "selfplay/selfplay_kernel.cu"
// The batch-environment kernels likewise.
#include "selfplay/env_kernel.cu"
// The net-free Gumbel search kernel likewise.
#include "search/search_kernel.cu"
// Board symmetries (export augmentation) are host/device code too.
#include "export/symmetry.h"

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

__global__ void image_actions(const rr::Geometry* g, const rr::ActionSpace* a, const rr::Symmetries* y,
                              const rr::State* states, const rr::Move* moves, rr::State* images, rr::Scratch* scratch,
                              rr::MoveList* lists, int* out, int n, int t) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = rr::sym_action_index(*g, *a, *y, t, states[i], moves[i], images[i], scratch[i], lists[i]);
}

}  // namespace

// Host entry point so the kernels are referenced (and therefore compiled for the device).
void ringrift_cuda_check_launch(const rr::Geometry* g, rr::State* s, rr::Scratch* sc, rr::MoveList* l,
                                unsigned long long* h, int n) {
  init_games<<<(n + 63) / 64, 64>>>(g, s, n, 2);
  step_first_legal<<<(n + 63) / 64, 64>>>(g, s, sc, l, h, n);
}

void ringrift_cuda_check_symmetry(const rr::Geometry* g, const rr::ActionSpace* a, const rr::Symmetries* y,
                                  const rr::State* s, const rr::Move* m, rr::State* img, rr::Scratch* sc,
                                  rr::MoveList* l, int* out, int n) {
  image_actions<<<(n + 63) / 64, 64>>>(g, a, y, s, m, img, sc, l, out, n, 1);
}

// CUDA kernel of the net-free Gumbel search (search/evaluators.h): one tree per thread, running
// the same search_select / search_apply steps as the host batch (bindings/search.cpp). Every
// array is the caller's, in global memory: trees (root state + bookkeeping), node pools
// (`capacity` nodes per tree) and work spaces (state, scratch, move list per tree); the search
// parameters are one struct in device memory (a struct argument by value is not portable across
// launchers). Compiled by nvcc in CI as a compile check (engine/cuda_check.cu) and by NVRTC in the
// tests; launched by python/ringrift/gpu/search_kernel.py, whose host twin is the CPU SearchBatch
// (bindings/search.cpp: the same search_reset + search_run_netfree per tree).
#include "search/evaluators.h"
#include "selfplay/batch_env.h"

extern "C" __global__ void rr_search_netfree(const rr::EnvTables* t, const rr::State* roots, rr::SearchTree* trees,
                                             rr::SearchNode* pools, int capacity, rr::SearchWork* work,
                                             unsigned long long seed, const unsigned long long* streams, int n,
                                             const rr::SearchParams* params, int leaf_eval, int rollout_moves,
                                             int* chosen_action, float* root_value) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  rr::SearchTree& tree = trees[i];
  rr::search_reset(tree, pools + (long long)i * capacity, capacity, roots[i], rr::Rng::for_game(seed, streams[i]));
  rr::search_run_netfree(t->geo, t->space, tree, *params, (uint8_t)leaf_eval, rollout_moves, work[i]);
  chosen_action[i] = tree.chosen >= 0 ? tree.pool[tree.chosen].action : -1;
  root_value[i] = rr::search_root_value(tree);
}

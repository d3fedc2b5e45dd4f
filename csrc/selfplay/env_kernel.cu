// CUDA kernels of the batch environment (selfplay/batch_env.h): one slot per thread, every
// array owned by the caller (cupy), so states, masks, features and results are read in place by
// whatever runs next on the device. Compiled at run time by NVRTC (through cupy), and by nvcc in
// CI as a compile check.
#include "selfplay/batch_env.h"
#include "selfplay/layout.h"  // host/device layout guard (active when the launcher passes the layout)

#define RR_ENV_SLOT                                \
  int slot = blockIdx.x * blockDim.x + threadIdx.x; \
  if (slot >= n) return;

#define RR_ENV_INFO_PARAMS                                                                                  \
  unsigned char *current, unsigned char *phase, unsigned char *done, unsigned char *winner,                 \
      unsigned char *reason, int *move_count, int *num_actions, float *values
#define RR_ENV_INFO rr::EnvInfo{current, phase, done, winner, reason, move_count, num_actions, values}

// Start a new game in every slot with reset[slot] != 0.
extern "C" __global__ void rr_env_reset(const rr::EnvTables* t, rr::State* states, const unsigned char* reset, int n,
                                        int num_players, RR_ENV_INFO_PARAMS) {
  RR_ENV_SLOT
  if (!reset[slot]) return;
  rr::init_state(states[slot], t->geo, num_players, false);
  rr::env_write_info(states[slot], RR_ENV_INFO, slot);
}

// Legal-action mask and action list (see env_mask: rows are cleared through the previous list,
// so mask, actions and num_actions must only ever be written here) and, when `features` is
// set, the feature planes and globals, for the slots with only[slot] != 0 (the games that moved
// or restarted; the others' outputs stand).
extern "C" __global__ void rr_env_observe(const rr::EnvTables* t, rr::State* states, rr::Scratch* scratch,
                                          const unsigned char* only, int n, unsigned char* mask, int* actions,
                                          int features, float* planes, float* globals, RR_ENV_INFO_PARAMS) {
  RR_ENV_SLOT
  if (!only[slot]) return;
  rr::State& s = states[slot];
  const long long A = t->space.size();
  int prev = num_actions[slot] > 0 ? num_actions[slot] : 0;
  rr::TerritoryOptions opts;  // per thread, on the stack: no move list per game (batch_env.h)
  num_actions[slot] = rr::env_mask(*t, s, scratch[slot], opts, mask + slot * A,
                                   actions + (long long)slot * rr::ENV_MAX_ACTIONS, prev);
  if (features) {
    const long long hw = (long long)t->grid.h * t->grid.w;
    rr::encode_features(t->geo, t->grid, s, planes + slot * rr::FEAT_PLANES * hw, globals + slot * rr::FEAT_GLOBALS);
  }
  rr::env_write_info(s, RR_ENV_INFO, slot);
}

// Decode every slot's action; nothing is applied, so a batch with one bad action is refused whole.
extern "C" __global__ void rr_env_decode(const rr::EnvTables* t, rr::State* states, rr::Scratch* scratch,
                                         const int* actions, int n, rr::Move* chosen, unsigned char* error) {
  RR_ENV_SLOT
  rr::TerritoryOptions opts;
  error[slot] = rr::env_decode(*t, states[slot], scratch[slot], opts, actions[slot], &chosen[slot]);
}

// Apply the decoded moves.
extern "C" __global__ void rr_env_apply(const rr::EnvTables* t, rr::State* states, rr::Scratch* scratch,
                                        const int* actions, const rr::Move* chosen, int n, RR_ENV_INFO_PARAMS) {
  RR_ENV_SLOT
  rr::env_apply(*t, states[slot], scratch[slot], actions[slot], chosen[slot]);
  rr::env_write_info(states[slot], RR_ENV_INFO, slot);
}

// The reference state hash of every slot (for checks against the CPU engine).
extern "C" __global__ void rr_env_hash(const rr::EnvTables* t, const rr::State* states, int n,
                                       unsigned long long* out) {
  RR_ENV_SLOT
  out[slot] = rr::state_hash(t->geo, states[slot]);
}

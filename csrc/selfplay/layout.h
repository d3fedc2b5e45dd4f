// Host/device layout guard. The GPU path moves raw struct bytes between two compilers: the binding
// (built by the system C++ compiler at install time) writes geometry and env tables that the
// kernels (built by NVRTC on the worker at run time) read, and reads back states and move
// records that the kernels wrote. If the two laid a struct out differently, the kernels would
// read garbage without a word. So the binding reports its layout (`_core.struct_layout()`, from
// the list below), the launchers pass it to NVRTC as -DRR_HOST_LAYOUT -DRR_HOST_<NAME>=<value>,
// and every entry becomes a static_assert: any difference is a compile error naming the entry.
// The list is one X-macro so the report and the checks cannot drift apart. It holds the size and
// alignment of every struct that crosses, nested ones included: NVRTC has no offsetof, and a
// compiler that padded a member differently would change the size of the struct around it.
#pragma once
#include "selfplay/batch_env.h"

#define RR_LAYOUT_FIELDS(X) \
  X(SIZEOF_MOVE, sizeof(rr::Move))                   \
  X(ALIGNOF_MOVE, alignof(rr::Move))                 \
  X(SIZEOF_BB, sizeof(rr::BB))                       \
  X(ALIGNOF_BB, alignof(rr::BB))                     \
  X(SIZEOF_GEOMETRY, sizeof(rr::Geometry))           \
  X(ALIGNOF_GEOMETRY, alignof(rr::Geometry))         \
  X(SIZEOF_LPSTRACKER, sizeof(rr::LpsTracker))       \
  X(ALIGNOF_LPSTRACKER, alignof(rr::LpsTracker))     \
  X(SIZEOF_STATE, sizeof(rr::State))                 \
  X(ALIGNOF_STATE, alignof(rr::State))               \
  X(SIZEOF_REGIONSCAN, sizeof(rr::RegionScan))       \
  X(ALIGNOF_REGIONSCAN, alignof(rr::RegionScan))     \
  X(SIZEOF_LINELIST, sizeof(rr::LineList))           \
  X(ALIGNOF_LINELIST, alignof(rr::LineList))         \
  X(SIZEOF_SCRATCH, sizeof(rr::Scratch))             \
  X(ALIGNOF_SCRATCH, alignof(rr::Scratch))           \
  X(SIZEOF_MOVELIST, sizeof(rr::MoveList))           \
  X(ALIGNOF_MOVELIST, alignof(rr::MoveList))         \
  X(SIZEOF_ACTIONSPACE, sizeof(rr::ActionSpace))     \
  X(ALIGNOF_ACTIONSPACE, alignof(rr::ActionSpace))   \
  X(SIZEOF_FEATUREGRID, sizeof(rr::FeatureGrid))     \
  X(ALIGNOF_FEATUREGRID, alignof(rr::FeatureGrid))   \
  X(SIZEOF_ENVTABLES, sizeof(rr::EnvTables))         \
  X(ALIGNOF_ENVTABLES, alignof(rr::EnvTables))

#if defined(__CUDACC__) && defined(RR_HOST_LAYOUT)
#define RR_LAYOUT_ASSERT(NAME, EXPR)                                                              \
  static_assert((EXPR) == (RR_HOST_##NAME),                                                       \
                "ringrift layout guard: " #NAME " differs between the installed binding and this " \
                "GPU compile (reinstall the package so both are built from the same sources)");
RR_LAYOUT_FIELDS(RR_LAYOUT_ASSERT)
#undef RR_LAYOUT_ASSERT
#endif

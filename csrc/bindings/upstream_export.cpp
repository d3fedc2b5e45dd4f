// Binding of upstream's training encoding (csrc/export/upstream.h) as ringrift._core.upstream.
// register_upstream_export(mod) is its only entry point (declared in bindings/common.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "bindings/common.h"
#include "export/upstream.h"

namespace py = pybind11;
using namespace rr;

namespace {

const up::Layout& layout_of(BoardType b) {
  static const struct All {
    std::unique_ptr<up::Layout> l[NUM_BOARDS];
    All() {
      for (int i = 0; i < NUM_BOARDS; i++) {
        l[i].reset(new up::Layout);
        up::build_layout(host_geometry((BoardType)i), *l[i]);
      }
    }
  } all;
  return *all.l[b];
}

}  // namespace

namespace rr {
namespace bind {

const EnvTables& env_tables_of(BoardType b);  // bindings/env.cpp

namespace {

// The State structs of a BatchEnv's `states` array (uint8, n * sizeof(State)) and the slots asked for.
const State* env_state_rows(const py::array& states, const py::array_t<int64_t>& slots, py::ssize_t* n_out) {
  if (!states.dtype().is(py::dtype::of<uint8_t>()) || !(states.flags() & py::array::c_style))
    throw py::type_error("states: expected a C-contiguous uint8 array (BatchEnv.states)");
  if (states.size() % (py::ssize_t)sizeof(State) != 0)
    throw py::value_error("states: size is not a multiple of the State size");
  const py::ssize_t n = states.size() / (py::ssize_t)sizeof(State);
  for (py::ssize_t i = 0; i < slots.size(); i++)
    if (slots.data()[i] < 0 || slots.data()[i] >= n)
      throw py::value_error("slots: " + std::to_string(slots.data()[i]) + " is not a slot of " + std::to_string(n));
  *n_out = n;
  return (const State*)states.data();
}

// Upstream's policy index of move `m` in state `s` (the encoder's index of a played move), or -1
// where upstream's layout has none (a move type it cannot encode, an index past its policy).
int32_t upstream_index_or_none(const up::Layout& L, const Geometry& g, const State& s, const Move& m) {
  if (up::policy_invalid_type(L, m.type)) return -1;
  const int32_t idx = up::policy_index(L, g, s, m);
  return idx >= 0 && idx < L.policy_size ? idx : -1;
}

}  // namespace

void register_upstream_export(py::module_& parent) {
  py::module_ m = parent.def_submodule(
      "upstream", "Upstream's default training encoding (docs/upstream_npz.md), computed from our engine's states");
  m.attr("HISTORY") = up::HISTORY;
  m.attr("FRAMES") = up::FRAMES;
  m.attr("NUM_GLOBALS") = up::GLOBALS;

  m.def("layout", [](const std::string& board) {
    const up::Layout& L = layout_of(exportpy::board_arg(board));
    py::dict d;
    d["board"] = board;
    d["base_planes"] = L.planes;
    d["in_channels"] = L.planes * up::FRAMES;
    d["spatial_size"] = L.S;
    d["policy_size"] = L.policy_size;
    d["rings_per_player"] = L.R;
    d["territory_threshold"] = L.territory_threshold;
    return d;
  }, py::arg("board"), "Shape constants of upstream's encoding of a board.");

  m.def("invalid_move_types", [](const std::string& board) {
    const up::Layout& L = layout_of(exportpy::board_arg(board));
    py::list out;
    for (int t = 0; t < NUM_MOVE_TYPES; t++)
      if (up::policy_invalid_type(L, (uint8_t)t)) out.append(t);
    return out;
  }, py::arg("board"), "Move type indices that upstream cannot encode (no sample).");

  m.def("action_policy_indices", [](Game& game, py::array_t<int32_t, py::array::c_style | py::array::forcecast> actions) {
    const Geometry& g = game.geo();
    const up::Layout& L = layout_of((BoardType)g.board);
    if (actions.ndim() != 1) throw py::value_error("actions must be a one-dimensional int32 array");
    const py::ssize_t E = actions.shape(0);
    const std::vector<Move> moves = exportpy::decode_actions(game, actions.data(), E);
    py::array_t<int32_t> out(E);
    int32_t* o = out.mutable_data();
    for (py::ssize_t e = 0; e < E; e++) o[e] = upstream_index_or_none(L, g, game.st(), moves[(size_t)e]);
    return out;
  }, py::arg("game"), py::arg("actions"),
     "Upstream's policy index, in this state, of the move each of our canonical actions names (the encoder's "
     "index of a played move), or -1 where upstream's layout has none. ValueError for an action not legal here.");

  m.def("encode_games", [](const std::string& board,
                           py::array_t<uint8_t, py::array::c_style | py::array::forcecast> moves,
                           py::array_t<int64_t, py::array::c_style | py::array::forcecast> game_offsets,
                           py::array_t<uint8_t, py::array::c_style | py::array::forcecast> num_players,
                           py::object hashes, py::object verify, py::object expect_over, pyarg::Int threads_arg,
                           py::object features_buffer) {
    const int threads = pyarg::thread_count(threads_arg);
    up::Job J;
    J.board = exportpy::board_arg(board);
    const up::Layout& L = layout_of(J.board);
    const exportpy::GameBatch in(moves, game_offsets, num_players, hashes, verify, expect_over);
    if (in.game_offsets()[0] != 0) throw py::value_error("game_offsets must start at 0");
    const py::ssize_t G = in.G;
    J.moves = in.move_records();
    J.game_off = in.game_offsets();
    J.games = G;
    J.num_players = in.num_players.data();
    J.hashes = in.hashes;
    J.verify = in.verify;
    J.expect_over = in.expect_over;
    J.threads = threads > 0 ? threads : (int)std::max(1u, std::thread::hardware_concurrency());
    J.plan(L);
    const py::ssize_t N = (py::ssize_t)J.sample_off[G];
    // Features (14 KB a sample on square8) go into the caller's buffer when it is large enough.
    const py::ssize_t C = L.planes * up::FRAMES, S = L.S;
    py::array_t<float> features = exportpy::features_array(features_buffer, N, C, S, S);
    py::array_t<float> globals({N, (py::ssize_t)up::GLOBALS});
    py::array_t<float> values(N);
    py::array_t<float> values_mp({N, (py::ssize_t)up::MP_SLOTS});
    py::array_t<int32_t> policy(N), move_numbers(N);
    py::array_t<uint8_t> phases(N), move_types(N);
    py::array_t<int8_t> status(G);
    py::array_t<int32_t> fail_step(G);
    py::array_t<uint8_t> final_winner(G);
    py::array_t<int64_t> sample_offsets(G + 1);
    J.features = features.mutable_data();
    J.globals = globals.mutable_data();
    J.values = values.mutable_data();
    J.values_mp = values_mp.mutable_data();
    J.policy = policy.mutable_data();
    J.phases = phases.mutable_data();
    J.move_types = move_types.mutable_data();
    J.move_numbers = move_numbers.mutable_data();
    J.status = status.mutable_data();
    J.fail_step = fail_step.mutable_data();
    J.final_winner = final_winner.mutable_data();
    std::memcpy(sample_offsets.mutable_data(), J.sample_off.data(), (size_t)(G + 1) * sizeof(int64_t));
    {
      py::gil_scoped_release release;
      up::run(J, L);
    }
    py::dict d;
    d["features"] = features;
    d["globals"] = globals;
    d["values"] = values;
    d["values_mp"] = values_mp;
    d["policy"] = policy;
    d["phases"] = phases;
    d["move_types"] = move_types;
    d["move_numbers"] = move_numbers;
    d["status"] = status;
    d["fail_step"] = fail_step;
    d["final_winner"] = final_winner;
    d["sample_offsets"] = sample_offsets;
    return d;
  }, py::arg("board"), py::arg("moves"), py::arg("game_offsets"), py::arg("num_players"),
     py::arg("hashes") = py::none(), py::arg("verify") = py::none(), py::arg("expect_over") = py::none(),
     py::arg("threads") = 1, py::arg("features_buffer") = py::none(),
     "Replay games from their move records and encode every state as upstream's exporter does "
     "(features with history, globals, values, values_mp by seat, policy index). The GIL is released. "
     "features_buffer: a float32 array reused for the features when it holds enough elements (the "
     "returned features are then a view of it, valid until the next call that uses it).");

  // Live play with a net of upstream's encoding (python/ringrift/train/players.py): the same base
  // frame and globals the export writes, of BatchEnv states, and upstream's policy index of
  // each playable action.
  m.def("encode_env_frames", [](const std::string& board, py::array states,
                                py::array_t<int64_t, py::array::c_style | py::array::forcecast> slots) {
    const BoardType b = exportpy::board_arg(board);
    const up::Layout& L = layout_of(b);
    const Geometry& g = host_geometry(b);
    py::ssize_t n = 0;
    const State* s = env_state_rows(states, slots, &n);
    const py::ssize_t k = slots.size();
    py::array_t<float> frames({k, (py::ssize_t)L.planes, (py::ssize_t)L.S, (py::ssize_t)L.S});
    py::array_t<float> globals({k, (py::ssize_t)up::GLOBALS});
    float* f = frames.mutable_data();
    float* gl = globals.mutable_data();
    const int64_t* sl = slots.data();
    {
      py::gil_scoped_release release;
      const size_t frame = (size_t)L.planes * L.S * L.S;
      for (py::ssize_t i = 0; i < k; i++) up::encode_frame(L, g, s[sl[i]], f + (size_t)i * frame, gl + (size_t)i * up::GLOBALS);
    }
    return py::make_tuple(frames, globals);
  }, py::arg("board"), py::arg("states"), py::arg("slots"),
     "Base frames (k, planes, S, S) and globals (k, 20) of upstream's encoding of BatchEnv states `slots`.");

  m.def("env_policy_indices", [](const std::string& board, py::array states,
                                 py::array_t<int64_t, py::array::c_style | py::array::forcecast> slots,
                                 py::array_t<int32_t, py::array::c_style | py::array::forcecast> actions,
                                 py::array_t<int32_t, py::array::c_style | py::array::forcecast> counts) {
    const BoardType b = exportpy::board_arg(board);
    const up::Layout& L = layout_of(b);
    const EnvTables& t = env_tables_of(b);
    py::ssize_t n = 0;
    const State* s = env_state_rows(states, slots, &n);
    const py::ssize_t k = slots.size();
    if (actions.ndim() != 2 || actions.shape(0) != k || counts.size() != k)
      throw py::value_error("actions must be (len(slots), W) and counts (len(slots),)");
    const py::ssize_t w = actions.shape(1);
    py::array_t<int32_t> out({k, w});
    int32_t* o = out.mutable_data();
    const int32_t* a = actions.data();
    const int32_t* c = counts.data();
    const int64_t* sl = slots.data();
    {
      py::gil_scoped_release release;
      std::unique_ptr<EnvHostScratch> scratch(new EnvHostScratch);
      std::unique_ptr<State> st(new State);
      for (py::ssize_t i = 0; i < k; i++) {
        for (py::ssize_t j = 0; j < w; j++) {
          int32_t idx = -1;
          if (j < c[i]) {
            *st = s[sl[i]];  // env_decode may use the state as scratch
            Move mv;
            if (env_decode(t, *st, scratch->sc, scratch->opts, a[i * w + j], &mv) == ENV_OK)
              idx = upstream_index_or_none(L, t.geo, s[sl[i]], mv);
          }
          o[i * w + j] = idx;
        }
      }
    }
    return out;
  }, py::arg("board"), py::arg("states"), py::arg("slots"), py::arg("actions"), py::arg("counts"),
     "Upstream's policy index of each playable action actions[i, :counts[i]] of BatchEnv state slots[i] "
     "(-1 where upstream has none, e.g. swap_sides on hex boards, and past counts[i]).");
}

}  // namespace bind
}  // namespace rr

// Binding of upstream's training encoding (csrc/export/upstream.h) as ringrift._core.upstream.
// register_upstream_export(mod) is its only entry point (declared in bindings/common.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "bindings/checked_args.h"
#include "export/upstream.h"

namespace py = pybind11;
using namespace rr;

namespace {

BoardType upstream_board_arg(const std::string& name) {
  int b = board_from_name(name.c_str());
  if (b < 0) throw py::value_error("unknown board '" + name + "' (expected square8, hex8, square19 or hexagonal)");
  return (BoardType)b;
}

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

template <class T>
const T* optional_array(const py::object& o, py::ssize_t n, const char* what,
                        py::array_t<T, py::array::c_style | py::array::forcecast>& keep) {
  if (o.is_none()) return nullptr;
  keep = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(o);
  if (!keep || keep.ndim() != 1 || keep.shape(0) != n)
    throw py::value_error(std::string(what) + " must be a one-dimensional array of length " + std::to_string(n));
  return keep.data();
}

}  // namespace

namespace rr {
namespace bind {

void register_upstream_export(py::module_& parent) {
  py::module_ m = parent.def_submodule(
      "upstream", "Upstream's default training encoding (docs/upstream_npz.md), computed from our engine's states");
  m.attr("HISTORY") = up::HISTORY;
  m.attr("FRAMES") = up::FRAMES;
  m.attr("NUM_GLOBALS") = up::GLOBALS;

  m.def("layout", [](const std::string& board) {
    const up::Layout& L = layout_of(upstream_board_arg(board));
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
    const up::Layout& L = layout_of(upstream_board_arg(board));
    py::list out;
    for (int t = 0; t < NUM_MOVE_TYPES; t++)
      if (up::policy_invalid_type(L, (uint8_t)t)) out.append(t);
    return out;
  }, py::arg("board"), "Move type indices that upstream cannot encode (no sample).");

  m.def("encode_games", [](const std::string& board,
                           py::array_t<uint8_t, py::array::c_style | py::array::forcecast> moves,
                           py::array_t<int64_t, py::array::c_style | py::array::forcecast> game_offsets,
                           py::array_t<uint8_t, py::array::c_style | py::array::forcecast> num_players,
                           py::object hashes, py::object verify, py::object expect_over, pyarg::Int threads_arg,
                           py::object features_buffer) {
    const int threads = (int)pyarg::in_range(threads_arg, 0, pyarg::MAX_THREADS, "threads (0 = all cores)");
    up::Job J;
    J.board = upstream_board_arg(board);
    const up::Layout& L = layout_of(J.board);
    if (moves.ndim() != 2 || moves.shape(1) != (py::ssize_t)sizeof(Move))
      throw py::value_error("moves must have shape (M, 16)");
    if (game_offsets.ndim() != 1 || game_offsets.shape(0) < 1)
      throw py::value_error("game_offsets must be a one-dimensional array of length G + 1");
    const py::ssize_t M = moves.shape(0), G = game_offsets.shape(0) - 1;
    if (num_players.ndim() != 1 || num_players.shape(0) != G)
      throw py::value_error("num_players must have one entry per game");
    const int64_t* off = game_offsets.data();
    if (off[0] != 0) throw py::value_error("game_offsets must start at 0");
    for (py::ssize_t i = 0; i < G; i++)
      if (off[i] < 0 || off[i] > off[i + 1] || off[i + 1] > M)
        throw py::value_error("game_offsets must be non-decreasing and within the move array");
    for (py::ssize_t i = 0; i < G; i++)
      if (num_players.data()[i] < 2 || num_players.data()[i] > MAX_PLAYERS)
        throw py::value_error("num_players entries must be 2, 3 or 4");
    py::array_t<uint64_t, py::array::c_style | py::array::forcecast> h_keep;
    py::array_t<uint8_t, py::array::c_style | py::array::forcecast> v_keep, e_keep;
    J.moves = reinterpret_cast<const Move*>(moves.data());
    J.game_off = off;
    J.games = G;
    J.num_players = num_players.data();
    J.hashes = optional_array<uint64_t>(hashes, M, "hashes", h_keep);
    J.verify = optional_array<uint8_t>(verify, G, "verify", v_keep);
    J.expect_over = optional_array<uint8_t>(expect_over, G, "expect_over", e_keep);
    J.threads = threads > 0 ? threads : (int)std::max(1u, std::thread::hardware_concurrency());
    J.plan(L);
    const py::ssize_t N = (py::ssize_t)J.sample_off[G];
    // Features (14 KB a sample on square8) go into the caller's buffer when one is given and
    // large enough: reusing it across chunks saves the kernel's zeroing of fresh pages, which
    // otherwise costs about as much as the encoding itself.
    const py::ssize_t C = L.planes * up::FRAMES, S = L.S;
    const py::ssize_t need = N * C * S * S;
    py::array_t<float> features;
    bool in_buffer = false;
    if (!features_buffer.is_none()) {
      if (!py::isinstance<py::array>(features_buffer))
        throw py::value_error("features_buffer must be a numpy float32 array");
      py::array buf = features_buffer.cast<py::array>();
      if (!buf.dtype().is(py::dtype::of<float>()) || !(buf.flags() & py::array::c_style) || !buf.writeable())
        throw py::value_error("features_buffer must be a writeable C-contiguous float32 array");
      if (buf.size() >= need) {
        features = py::array_t<float>({N, C, S, S}, {C * S * S * 4, S * S * 4, S * 4, (py::ssize_t)4},
                                      static_cast<float*>(buf.mutable_data()), buf);
        in_buffer = true;
      }
    }
    if (!in_buffer) features = py::array_t<float>({N, C, S, S});
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
}

}  // namespace bind
}  // namespace rr

// ringrift._core, game DB area: the packed step blob of schema 2 (export/step_pack.h), packed a
// whole batch at a time and unpacked a row at a time, both without the GIL.
#include "bindings/common.h"
#include "export/step_pack.h"

namespace rr {
namespace bind {

using exportpy::CArray;

// Packs every game of a batch: moves (M, 16), phases (M,), players (M,), offsets (G + 1,).
// Returns (blob, blob_offsets): game g's packed steps are blob[blob_offsets[g]:blob_offsets[g + 1]].
py::tuple pack_steps(CArray<uint8_t> moves, CArray<uint8_t> phases, CArray<uint8_t> players, CArray<int64_t> offsets) {
  if (moves.ndim() != 2 || moves.shape(1) != (py::ssize_t)sizeof(Move))
    throw py::value_error("moves must have shape (M, 16)");
  const py::ssize_t M = moves.shape(0);
  if (phases.ndim() != 1 || phases.shape(0) != M || players.ndim() != 1 || players.shape(0) != M)
    throw py::value_error("phases and players must have one entry per move");
  if (offsets.ndim() != 1 || offsets.shape(0) < 1) throw py::value_error("offsets must have length G + 1");
  const py::ssize_t G = offsets.shape(0) - 1;
  const int64_t* off = offsets.data();
  for (py::ssize_t g = 0; g < G; g++)
    if (off[g] < 0 || off[g] > off[g + 1] || off[g + 1] > M)
      throw py::value_error("offsets must be non-decreasing and within the move array");
  std::vector<uint8_t> out;
  std::vector<int64_t> blob_off((size_t)G + 1, 0);
  std::string error;
  {
    py::gil_scoped_release release;
    out.resize((size_t)M * steppack::MAX_STEP_BYTES + 1);
    const Move* mv = reinterpret_cast<const Move*>(moves.data());
    uint8_t* w = out.data();
    try {
      for (py::ssize_t g = 0; g < G; g++) {
        w = steppack::pack_game(mv + off[g], phases.data() + off[g], players.data() + off[g], off[g + 1] - off[g], w,
                                off[g]);
        blob_off[g + 1] = (int64_t)(w - out.data());
      }
    } catch (const std::invalid_argument& e) {
      error = e.what();
    }
    out.resize((size_t)blob_off[(size_t)G]);
  }
  if (!error.empty()) throw py::value_error(error);
  py::array_t<int64_t> offs((py::ssize_t)blob_off.size());
  std::memcpy(offs.mutable_data(), blob_off.data(), blob_off.size() * sizeof(int64_t));
  return py::make_tuple(py::bytes(reinterpret_cast<const char*>(out.data()), out.size()), offs);
}

// Unpacks one game's packed steps (exactly `count` of them) into (moves (count, 16), phases, players).
py::tuple unpack_steps(const py::bytes& blob, pyarg::Int count_arg) {
  long long count = pyarg::in_range(count_arg, 0, pyarg::MAX_MOVE_COUNT, "count");
  char* data = nullptr;
  py::ssize_t len = 0;
  if (PYBIND11_BYTES_AS_STRING_AND_SIZE(blob.ptr(), &data, &len) != 0) throw py::error_already_set();
  py::array_t<uint8_t> moves({(py::ssize_t)count, (py::ssize_t)sizeof(Move)});
  py::array_t<uint8_t> phases((py::ssize_t)count), players((py::ssize_t)count);
  try {
    steppack::unpack_game(reinterpret_cast<const uint8_t*>(data), (size_t)len, count,
                          reinterpret_cast<Move*>(moves.mutable_data()), phases.mutable_data(), players.mutable_data());
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  return py::make_tuple(moves, phases, players);
}

// Cuts a byte buffer at offsets[0..G] into G bytes objects (one list, built without Python slicing).
py::list split_blob(const py::buffer& data, CArray<int64_t> offsets, pyarg::Int scale_arg) {
  py::buffer_info info = data.request();
  const long long scale = pyarg::in_range(scale_arg, 1, 64, "scale");
  if (offsets.ndim() != 1 || offsets.shape(0) < 1) throw py::value_error("offsets must have length G + 1");
  const size_t size = (size_t)info.size * (size_t)info.itemsize;
  const char* base = static_cast<const char*>(info.ptr);
  const int64_t* off = offsets.data();
  const py::ssize_t G = offsets.shape(0) - 1;
  for (py::ssize_t g = 0; g < G; g++)
    if (off[g] < 0 || off[g] > off[g + 1] || (size_t)(off[g + 1] * scale) > size)
      throw py::value_error("offsets must be non-decreasing and within the buffer");
  py::list out(G);
  for (py::ssize_t g = 0; g < G; g++)
    out[g] = py::bytes(base + off[g] * scale, (size_t)((off[g + 1] - off[g]) * scale));
  return out;
}

void register_db(py::module_& mod) {
  mod.def("split_blob", &split_blob, py::arg("data"), py::arg("offsets"), py::arg("scale") = 1,
          "Cut a buffer into bytes objects: data[offsets[g]*scale : offsets[g+1]*scale] for each g.");
  mod.def("pack_steps", &pack_steps, py::arg("moves"), py::arg("phases"), py::arg("players"), py::arg("offsets"),
          "Pack a batch's steps into the game DB's step blobs: returns (blob, blob_offsets).");
  mod.def("unpack_steps", &unpack_steps, py::arg("blob"), py::arg("count"),
          "Unpack one game's step blob: returns (moves (count, 16), phases, players).");
}

}  // namespace bind
}  // namespace rr

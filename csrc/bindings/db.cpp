// ringrift._core, game DB area: the packed step blob of schema 2 (export/step_pack.h), packed a
// whole batch at a time and unpacked a row at a time, both without the GIL; and the native insert
// of a self-play batch (db/game_writer.h), also without the GIL.
#include "bindings/common.h"
#include "db/game_writer.h"
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

// True when the native writer can run in this process: SQLite found in the library that Python's
// sqlite3 module loaded from `module_path` (db/sqlite_api.h).
bool db_writer_available(const std::string& module_path) {
  return sqlite::load(module_path) != nullptr;
}

// Inserts a _core.selfplay_batch result into the game DB at `path` with `sql` (schema.py's INSERT
// of INSERT_COLUMNS, which the caller has checked against DB_WRITER_COLUMNS). Returns rows added;
// RuntimeError with SQLite's message, ValueError for a malformed batch; nothing stored then.
long long db_insert_batch(const std::string& module_path, const std::string& path, const std::string& sql,
                          const py::dict& batch, const std::string& board, pyarg::Int num_players, const std::string& policy,
                          pyarg::Int seed, py::object engine_version, py::object host, py::object max_moves,
                          const std::string& started_at, const std::string& created_at, pyarg::Int stored_kind,
                          bool keep_low32, std::vector<std::string> reasons, pyarg::Int busy_timeout_ms) {
  const sqlite::Api* api = sqlite::load(module_path);
  if (!api) throw std::runtime_error("the native game writer found no SQLite library in this process");
  if (reasons.empty()) throw py::value_error("reasons must name at least code 0");
  auto field = [&](const char* key) -> py::object {
    if (!batch.contains(key)) throw py::value_error(std::string("batch has no field '") + key + "'");
    return batch[key];
  };
  CArray<int64_t> game_index = py::cast<CArray<int64_t>>(field("game_index"));
  CArray<int64_t> offsets = py::cast<CArray<int64_t>>(field("move_offsets"));
  CArray<int32_t> move_count = py::cast<CArray<int32_t>>(field("move_count"));
  CArray<uint8_t> winner = py::cast<CArray<uint8_t>>(field("winner")), reason = py::cast<CArray<uint8_t>>(field("reason")),
                  capped = py::cast<CArray<uint8_t>>(field("capped"));
  CArray<double> seconds = py::cast<CArray<double>>(field("seconds"));
  CArray<uint8_t> moves = py::cast<CArray<uint8_t>>(field("moves"));
  CArray<uint64_t> hashes = py::cast<CArray<uint64_t>>(field("hashes"));
  CArray<uint8_t> phases = py::cast<CArray<uint8_t>>(field("phases")), players = py::cast<CArray<uint8_t>>(field("players"));
  if (game_index.ndim() != 1) throw py::value_error("game_index must be one-dimensional");
  const py::ssize_t G = game_index.shape(0);
  if (move_count.ndim() != 1 || move_count.shape(0) != G) throw py::value_error("move_count must have one entry per game");
  for (const py::array* a : {(const py::array*)&winner, (const py::array*)&reason, (const py::array*)&capped,
                             (const py::array*)&seconds})
    if (a->ndim() != 1 || a->shape(0) != G) throw py::value_error("winner, reason, capped and seconds need one entry per game");
  if (offsets.ndim() != 1 || offsets.shape(0) != G + 1) throw py::value_error("move_offsets must have length G + 1");
  if (moves.ndim() != 2 || moves.shape(1) != (py::ssize_t)sizeof(Move)) throw py::value_error("moves must have shape (M, 16)");
  const py::ssize_t M = moves.shape(0);
  if (hashes.ndim() != 1 || hashes.shape(0) != M || phases.ndim() != 1 || phases.shape(0) != M ||
      players.ndim() != 1 || players.shape(0) != M)
    throw py::value_error("hashes, phases and players must have one entry per move");
  const int64_t* off = offsets.data();
  for (py::ssize_t g = 0; g < G; g++)  // reason codes: checked by insert_games, nothing stored then
    if (off[g] < 0 || off[g + 1] > M || off[g + 1] - off[g] != move_count.data()[g])
      throw py::value_error("move_offsets do not match move_count and the step arrays");
  dbwrite::RunColumns run;
  run.board = board;
  run.policy = policy;
  run.num_players = num_players.v;
  run.seed = seed.v;
  run.has_engine_version = !engine_version.is_none();
  if (run.has_engine_version) run.engine_version = py::cast<std::string>(engine_version);
  run.has_host = !host.is_none();
  if (run.has_host) run.host = py::cast<std::string>(host);
  run.has_max_moves = !max_moves.is_none();
  if (run.has_max_moves) run.max_moves = pyarg::int_value(max_moves, "max_moves");
  run.started_at = started_at;
  run.created_at = created_at;
  run.parity_status = "unchecked";
  run.stored_kind = (int)pyarg::in_range(stored_kind, 0, 255, "stored_kind");
  run.keep_low32 = keep_low32;
  dbwrite::BatchView b;
  b.games = (size_t)G;
  b.game_index = game_index.data();
  b.offsets = off;
  b.move_count = move_count.data();
  b.winner = winner.data();
  b.reason = reason.data();
  b.capped = capped.data();
  b.seconds = seconds.data();
  b.moves = reinterpret_cast<const Move*>(moves.data());
  b.hashes = hashes.data();
  b.phases = phases.data();
  b.players = players.data();
  const int timeout = (int)pyarg::in_range(busy_timeout_ms, 0, 3600000, "busy_timeout_ms");
  std::string error;
  bool bad_value = false;
  long long added = 0;
  {
    py::gil_scoped_release release;
    try {
      added = dbwrite::insert_games(*api, path, sql, run, b, reasons, timeout);
    } catch (const std::invalid_argument& e) {
      error = e.what();
      bad_value = true;
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (bad_value) throw py::value_error(error);
  if (!error.empty()) throw std::runtime_error(error);
  return added;
}

void register_db(py::module_& mod) {
  mod.attr("DB_WRITER_COLUMNS") =
      py::cast(std::vector<std::string>(dbwrite::WRITER_COLUMNS, dbwrite::WRITER_COLUMNS + dbwrite::NUM_WRITER_COLUMNS));
  mod.def("db_writer_available", &db_writer_available, py::arg("module_path"),
          "Whether the native game writer can use the SQLite library loaded from `module_path` (Python's _sqlite3).");
  mod.def("db_insert_batch", &db_insert_batch, py::arg("module_path"), py::arg("path"), py::arg("sql"), py::arg("batch"),
          py::arg("board"), py::arg("num_players"), py::arg("policy"), py::arg("seed"), py::arg("engine_version"),
          py::arg("host"), py::arg("max_moves"), py::arg("started_at"), py::arg("created_at"), py::arg("stored_kind"),
          py::arg("keep_low32"), py::arg("reasons"), py::arg("busy_timeout_ms"),
          "Insert a self-play batch into a game DB in one transaction without the GIL; returns rows added.");
  mod.def("split_blob", &split_blob, py::arg("data"), py::arg("offsets"), py::arg("scale") = 1,
          "Cut a buffer into bytes objects: data[offsets[g]*scale : offsets[g+1]*scale] for each g.");
  mod.def("pack_steps", &pack_steps, py::arg("moves"), py::arg("phases"), py::arg("players"), py::arg("offsets"),
          "Pack a batch's steps into the game DB's step blobs: returns (blob, blob_offsets).");
  mod.def("unpack_steps", &unpack_steps, py::arg("blob"), py::arg("count"),
          "Unpack one game's step blob: returns (moves (count, 16), phases, players).");
}

}  // namespace bind
}  // namespace rr

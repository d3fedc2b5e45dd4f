// ringrift._core, game DB area: the packed step blob of schema 2 (export/step_pack.h), packed a
// whole batch at a time and unpacked a row at a time, both without the GIL; and the native insert
// of a self-play batch (db/game_writer.h), also without the GIL.
#include "bindings/common.h"
#include "db/game_writer.h"
#include "export/step_pack.h"
#include "selfplay/db_runner.h"

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

// The SQLite library of Python's sqlite3 (RuntimeError when the writer cannot find it), for a
// writer whose reason texts `reasons` must name at least code 0.
const sqlite::Api& writer_api(const std::string& module_path, const std::vector<std::string>& reasons) {
  const sqlite::Api* api = sqlite::load(module_path);
  if (!api) throw std::runtime_error("the native game writer found no SQLite library in this process");
  if (reasons.empty()) throw py::value_error("reasons must name at least code 0");
  return *api;
}

int busy_timeout_arg(pyarg::Int ms) { return (int)pyarg::in_range(ms, 0, 3600000, "busy_timeout_ms"); }

// Runs the writer's `work` with the GIL released. A std::invalid_argument from it (a row the
// packed format cannot hold) becomes ValueError, any other failure RuntimeError with its message;
// a Python error raised by a callback that took the GIL passes through as it is.
template <class Work>
void write_without_gil(Work&& work) {
  std::string error;
  bool bad_value = false;
  {
    py::gil_scoped_release release;
    try {
      work();
    } catch (py::error_already_set&) {
      throw;
    } catch (const std::invalid_argument& e) {
      error = e.what();
      bad_value = true;
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (bad_value) throw py::value_error(error);
  if (!error.empty()) throw std::runtime_error(error);
}

// The columns every row of a self-play run shares, checked.
dbwrite::RunColumns run_columns(const std::string& board, pyarg::Int num_players, const std::string& policy,
                                pyarg::Int seed, const py::object& engine_version, const py::object& host,
                                const py::object& max_moves, pyarg::Int stored_kind, bool keep_low32) {
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
  run.parity_status = "unchecked";
  run.stored_kind = (int)pyarg::in_range(stored_kind, 0, 255, "stored_kind");
  run.keep_low32 = keep_low32;
  return run;
}

// Inserts a _core.selfplay_batch result into the game DB at `path` with `sql` (schema.py's INSERT
// of INSERT_COLUMNS, which the caller has checked against DB_WRITER_COLUMNS). Returns rows added;
// RuntimeError with SQLite's message, ValueError for a malformed batch; nothing stored then.
long long db_insert_batch(const std::string& module_path, const std::string& path, const std::string& sql,
                          const py::dict& batch, const std::string& board, pyarg::Int num_players, const std::string& policy,
                          pyarg::Int seed, py::object engine_version, py::object host, py::object max_moves,
                          const std::string& started_at, const std::string& created_at, pyarg::Int stored_kind,
                          bool keep_low32, std::vector<std::string> reasons, pyarg::Int busy_timeout_ms) {
  const sqlite::Api& api = writer_api(module_path, reasons);
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
  dbwrite::RunColumns run = run_columns(board, num_players, policy, seed, engine_version, host, max_moves,
                                        stored_kind, keep_low32);
  run.started_at = started_at;
  run.created_at = created_at;
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
  const int timeout = busy_timeout_arg(busy_timeout_ms);
  long long added = 0;
  write_without_gil([&] { added = dbwrite::insert_games(api, path, sql, run, b, reasons, timeout); });
  return added;
}

// Plays the game indices `runs` ([a, b) pairs, ascending) of run (board, num_players, seed,
// policy) on `threads` native threads and stores them in the game DB at `path`, a chunk of
// `chunk_size` games a transaction, in index order (selfplay/db_runner.h): the GIL is released
// throughout, except to call progress(games_played, games_added) after commits and to check
// for Ctrl-C. Returns the totals of the committed chunks and whether the run was interrupted.
// RuntimeError with SQLite's message if a chunk cannot be stored (the chunks before it stay).
py::dict selfplay_into_db(const std::string& module_path, const std::string& path, const std::string& sql,
                          const std::string& board, pyarg::Int num_players, py::object seed_,
                          const std::vector<std::pair<long long, long long>>& runs, const std::string& policy,
                          pyarg::Int threads_, pyarg::Int max_moves_, pyarg::Int chunk_size_, py::object engine_version,
                          py::object host, pyarg::Int stored_kind, bool keep_low32, std::vector<std::string> reasons,
                          pyarg::Int busy_timeout_ms, py::object progress) {
  const sqlite::Api& api = writer_api(module_path, reasons);
  if (num_players.v < 2 || num_players.v > MAX_PLAYERS) throw py::value_error("num_players must be 2, 3 or 4");
  BatchOptions play;
  play.board = parse_board(board);
  play.num_players = (int)num_players.v;
  play.seed = pyarg::u64(seed_, "seed");
  play.policy = parse_policy(policy);
  play.threads = resolve_threads(pyarg::thread_count(threads_));
  play.max_moves = (int)pyarg::in_range(max_moves_, 1, pyarg::MAX_MOVE_COUNT, "max_moves");
  const size_t chunk = (size_t)pyarg::in_range(chunk_size_, 1, 1 << 20, "chunk_size");
  std::vector<std::pair<int64_t, int64_t>> index_runs;
  long long last = -1;
  for (auto [a, b] : runs) {
    if (a < 0 || b > ((long long)1 << 62) || a >= b || a < last)
      throw py::value_error("runs must be ascending, non-empty [a, b) ranges of game indices in 0..2**62");
    index_runs.emplace_back(a, b);
    last = b;
  }
  if (play.seed > (uint64_t)INT64_MAX) throw py::value_error("seed: the game DB stores seeds up to 2**63 - 1");
  dbwrite::RunColumns cols = run_columns(board, num_players, policy, pyarg::Int{(long long)play.seed}, engine_version,
                                         host, py::int_(play.max_moves), stored_kind, keep_low32);
  const int timeout = busy_timeout_arg(busy_timeout_ms);
  const size_t num_reasons = reasons.size();
  bool interrupted = false;
  DbRunTotals totals;
  write_without_gil([&] {
    dbwrite::GameWriter writer(api, path, sql, std::move(reasons), timeout);
    DbRun run(play, ChunkCursor(std::move(index_runs), chunk), writer, cols, num_reasons);
    long long reported = 0;
    run.run([&]() -> bool {
      // Between commits, with the GIL: report new commits, and stop on a pending signal.
      py::gil_scoped_acquire hold;
      if (PyErr_CheckSignals() != 0) {
        PyErr_Clear();
        interrupted = true;
        return false;
      }
      DbRunTotals now = run.totals();
      if (now.played != reported && !progress.is_none()) {
        reported = now.played;
        try {
          progress(now.played, now.added);
        } catch (py::error_already_set& e) {
          if (e.matches(PyExc_KeyboardInterrupt)) {
            interrupted = true;
            return false;
          }
          throw;
        }
      }
      return true;
    });
    totals = run.totals();
  });
  py::dict d;
  d["added"] = totals.added;
  d["played"] = totals.played;
  d["moves"] = totals.moves;
  d["capped"] = totals.capped;
  d["wins"] = std::vector<long long>(totals.wins, totals.wins + MAX_PLAYERS + 1);
  d["reasons"] = totals.reasons;
  d["interrupted"] = interrupted;
  return d;
}

void register_db(py::module_& mod) {
  mod.attr("DB_WAL_AUTOCHECKPOINT_PAGES") = dbwrite::WAL_AUTOCHECKPOINT_PAGES;
  mod.attr("DB_WRITER_COLUMNS") =
      py::cast(std::vector<std::string>(dbwrite::WRITER_COLUMNS, dbwrite::WRITER_COLUMNS + dbwrite::NUM_WRITER_COLUMNS));
  mod.def("db_writer_available", &db_writer_available, py::arg("module_path"),
          "Whether the native game writer can use the SQLite library loaded from `module_path` (Python's _sqlite3).");
  mod.def("db_insert_batch", &db_insert_batch, py::arg("module_path"), py::arg("path"), py::arg("sql"), py::arg("batch"),
          py::arg("board"), py::arg("num_players"), py::arg("policy"), py::arg("seed"), py::arg("engine_version"),
          py::arg("host"), py::arg("max_moves"), py::arg("started_at"), py::arg("created_at"), py::arg("stored_kind"),
          py::arg("keep_low32"), py::arg("reasons"), py::arg("busy_timeout_ms"),
          "Insert a self-play batch into a game DB in one transaction without the GIL; returns rows added.");
  mod.def("selfplay_into_db", &selfplay_into_db, py::arg("module_path"), py::arg("path"), py::arg("sql"),
          py::arg("board"), py::arg("num_players"), py::arg("seed"), py::arg("runs"), py::arg("policy"),
          py::arg("threads"), py::arg("max_moves"), py::arg("chunk_size"), py::arg("engine_version"), py::arg("host"),
          py::arg("stored_kind"), py::arg("keep_low32"), py::arg("reasons"), py::arg("busy_timeout_ms"),
          py::arg("progress") = py::none(),
          "Play game index runs on native threads straight into a game DB, a transaction a chunk, without the GIL.");
  mod.def("split_blob", &split_blob, py::arg("data"), py::arg("offsets"), py::arg("scale") = 1,
          "Cut a buffer into bytes objects: data[offsets[g]*scale : offsets[g+1]*scale] for each g.");
  mod.def("pack_steps", &pack_steps, py::arg("moves"), py::arg("phases"), py::arg("players"), py::arg("offsets"),
          "Pack a batch's steps into the game DB's step blobs: returns (blob, blob_offsets).");
  mod.def("unpack_steps", &unpack_steps, py::arg("blob"), py::arg("count"),
          "Unpack one game's step blob: returns (moves (count, 16), phases, players).");
}

}  // namespace bind
}  // namespace rr

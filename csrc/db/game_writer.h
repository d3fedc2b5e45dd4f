// Native insert of a self-play batch into the game DB: the same rows as GameDB.insert_batch's
// Python path (python/ringrift/db/store.py; schema in schema.py), packed and written here in one
// transaction on a connection of its own, so the whole write runs without the GIL and without a
// Python object per game. The caller passes the INSERT statement (schema.py owns the SQL) and
// checks that its column order is WRITER_COLUMNS. Host only.
#pragma once
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "db/sqlite_api.h"
#include "engine/defs.h"
#include "export/step_pack.h"

namespace rr {
namespace dbwrite {

// The order in which insert_games binds a row (schema.py: INSERT_COLUMNS must be the same).
inline const char* const WRITER_COLUMNS[] = {
    "board", "num_players", "policy", "seed", "game_index", "engine_version", "host", "max_moves", "winner",
    "reason", "move_count", "capped", "started_at", "duration_ms", "created_at", "parity_status", "hash_kind",
    "final_hash", "steps", "hashes"};
constexpr int NUM_WRITER_COLUMNS = 20;

// What every row of the batch shares. An empty optional string is stored as NULL.
struct RunColumns {
  std::string board, policy, engine_version, host, started_at, created_at, parity_status;
  bool has_engine_version = false, has_host = false, has_max_moves = false;
  long long num_players = 0, seed = 0, max_moves = 0;
  int stored_kind = 0;  // hash_kind as stored: a 64-bit kind's 32-bit twin (schema.py HASH_STORED_AS)
  bool keep_low32 = false;  // store each step's low 32 bits and the final state's full hash
};

// The batch as _core.selfplay_batch returns it (checked by the caller): G games, M steps.
struct BatchView {
  size_t games = 0;
  const int64_t* game_index = nullptr;
  const int64_t* offsets = nullptr;  // G + 1
  const int32_t* move_count = nullptr;
  const uint8_t *winner = nullptr, *reason = nullptr, *capped = nullptr;
  const double* seconds = nullptr;
  const Move* moves = nullptr;
  const uint64_t* hashes = nullptr;
  const uint8_t *phases = nullptr, *players = nullptr;
};

// Closes what it holds on every path out of insert_games.
struct Connection {
  const sqlite::Api& api;
  sqlite::sqlite3* db = nullptr;
  sqlite::sqlite3_stmt* stmt = nullptr;
  ~Connection() {
    if (stmt) api.finalize(stmt);
    if (db) {
      if (!api.get_autocommit(db)) api.exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      api.close_v2(db);
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(what + ": " + (db ? api.errmsg(db) : "out of memory"));
  }
};

// Inserts every game of `b` in one transaction (all or nothing), skipping identities already
// stored (the statement's ON CONFLICT DO NOTHING); returns the rows added. `reasons[code]` is the
// text stored for a reason code ("" stores NULL). Throws std::runtime_error (SQLite's message)
// or std::invalid_argument (a step the packed format cannot hold, a reason code with no text);
// nothing is stored then.
inline long long insert_games(const sqlite::Api& api, const std::string& path, const std::string& sql,
                              const RunColumns& run, const BatchView& b, const std::vector<std::string>& reasons,
                              int busy_timeout_ms) {
  // Bound without a copy, so they outlive the statement. (A null pointer would bind NULL, not an
  // empty blob: an empty hashes blob points into steps, which always has a byte.)
  std::vector<uint8_t> steps, hashes;
  Connection c{api};
  if (api.open_v2(path.c_str(), &c.db, sqlite::OPEN_READWRITE | sqlite::OPEN_NOMUTEX, nullptr) != sqlite::OK)
    c.fail("cannot open the database");
  api.busy_timeout(c.db, busy_timeout_ms);
  if (api.exec(c.db, "PRAGMA synchronous = NORMAL", nullptr, nullptr, nullptr) != sqlite::OK) c.fail("PRAGMA");
  if (api.prepare_v2(c.db, sql.c_str(), (int)sql.size(), &c.stmt, nullptr) != sqlite::OK) c.fail("INSERT");
  if (api.exec(c.db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != sqlite::OK) c.fail("BEGIN");
  auto text = [&](int col, const std::string& s, bool present) {
    return present ? api.bind_text(c.stmt, col, s.data(), (int)s.size(), nullptr) : api.bind_null(c.stmt, col);
  };
  // The run's columns: bound once, kept by sqlite3_reset for every row.
  int rc = text(1, run.board, true) | api.bind_int64(c.stmt, 2, run.num_players) | text(3, run.policy, true) |
           api.bind_int64(c.stmt, 4, run.seed) | text(6, run.engine_version, run.has_engine_version) |
           text(7, run.host, run.has_host) |
           (run.has_max_moves ? api.bind_int64(c.stmt, 8, run.max_moves) : api.bind_null(c.stmt, 8)) |
           text(13, run.started_at, true) | text(15, run.created_at, true) | text(16, run.parity_status, true) |
           api.bind_int64(c.stmt, 17, run.stored_kind);
  if (rc != sqlite::OK) c.fail("binding the run's columns");
  const int width = run.keep_low32 ? 4 : 8;  // bytes of each step's stored hash
  long long added = 0;
  for (size_t g = 0; g < b.games; g++) {
    const int64_t a = b.offsets[g], n = b.offsets[g + 1] - a;
    steps.resize((size_t)n * steppack::MAX_STEP_BYTES + 1);
    uint8_t* end = steppack::pack_game(b.moves + a, b.phases + a, b.players + a, n, steps.data(), a);
    hashes.resize((size_t)n * width);
    for (int64_t i = 0; i < n; i++) {  // little-endian, as the Python path's numpy arrays
      uint64_t h = b.hashes[a + i];
      for (int k = 0; k < width; k++) hashes[(size_t)i * width + k] = (uint8_t)(h >> (8 * k));
    }
    if (b.reason[g] >= reasons.size())
      throw std::invalid_argument("reason code " + std::to_string(b.reason[g]) + " of game " + std::to_string(g) +
                                  " is not a victory reason");
    const std::string& why = reasons[b.reason[g]];
    double ms = b.seconds[g] * 1000.0;  // rounded half to even, as numpy's rint on the Python path
    long long duration = std::isfinite(ms) && std::fabs(ms) < 9e15 ? (long long)std::nearbyint(ms) : 0;
    rc = api.bind_int64(c.stmt, 5, b.game_index[g]) | api.bind_int64(c.stmt, 9, b.winner[g]) |
         text(10, why, !why.empty()) | api.bind_int64(c.stmt, 11, b.move_count[g]) |
         api.bind_int64(c.stmt, 12, b.capped[g] != 0) | api.bind_int64(c.stmt, 14, duration) |
         ((run.keep_low32 && n > 0) ? api.bind_int64(c.stmt, 18, (long long)b.hashes[a + n - 1])
                                    : api.bind_null(c.stmt, 18)) |
         api.bind_blob(c.stmt, 19, steps.data(), (int)(end - steps.data()), nullptr) |
         api.bind_blob(c.stmt, 20, hashes.empty() ? steps.data() : hashes.data(), (int)hashes.size(), nullptr);
    if (rc != sqlite::OK) c.fail("binding game " + std::to_string(b.game_index[g]));
    if (api.step(c.stmt) != sqlite::DONE) c.fail("inserting game " + std::to_string(b.game_index[g]));
    added += api.changes(c.db);
    api.reset(c.stmt);
  }
  if (api.exec(c.db, "COMMIT", nullptr, nullptr, nullptr) != sqlite::OK) c.fail("COMMIT");
  return added;
}

}  // namespace dbwrite
}  // namespace rr

// Native insert of a self-play batch into the game DB: the same rows as GameDB.insert_batch's
// Python path (python/ringrift/db/store.py; schema in schema.py), packed and written here in one
// transaction, so the whole write runs without the GIL and without a Python object per game.
// The caller passes the INSERT statement (schema.py owns the SQL) and checks that its column
// order is WRITER_COLUMNS. Host only.
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

// WAL pages after which a commit folds the log into the database (SQLite's wal_autocheckpoint;
// its default is 1000). With 32 KiB pages the default let a 20,000-game square8 run (23 MB) keep
// everything in the log and fold it in at close, serially, after the last game: 15-20 ms that no
// second thread shared, and a log file as large as the data. At 128 pages (4 MiB) the committing
// thread folds the log in every dozen chunks while the other threads play, and the log's pages
// stay few and warm: medians of 10 interleaved runs of 20,000 square8 games: CPU-s 0.911 -> 0.891 on
// one thread, wall 0.535 -> 0.475 s on two. GameDB's own connections use the same value.
constexpr int WAL_AUTOCHECKPOINT_PAGES = 128;

// What every row of the batch shares. An empty optional string is stored as NULL.
struct RunColumns {
  std::string board, policy, engine_version, host, started_at, created_at, parity_status;
  bool has_engine_version = false, has_host = false, has_max_moves = false;
  long long num_players = 0, seed = 0, max_moves = 0;
  int stored_kind = 0;  // hash_kind as stored: a 64-bit kind's 32-bit twin (schema.py HASH_STORED_AS)
  bool keep_low32 = false;  // store each step's low 32 bits and the final state's full hash
};

// The batch as _core.selfplay_batch returns it (checked by the caller): G games, M steps.
// The steps come as move records with the phase and player after each (packed here), or
// already packed (`packed`: the native self-play path, selfplay/db_runner.h).
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
  const uint8_t* packed = nullptr;           // when set: game g's steps blob is packed[packed_offsets[g]..[g + 1])
  const int64_t* packed_offsets = nullptr;  // G + 1
};

// One row a statement, on purpose: 16 rows an INSERT (the VALUES tuple repeated) saved SQLite a
// third of its per-row work in callgrind, but the schema's CHECKs that call length() make a
// statement that writes several rows inside a transaction keep a statement journal (a temp file
// that spilled on every commit, 3,040 -> 11,210 pwrites for 20,000 square8 games, more system time
// than the instructions saved; in memory, temp_store = MEMORY, copying its pages cost as much).
//
// One connection and one prepared INSERT, kept for a whole run: each insert() is one transaction
// (all or nothing) that skips identities already stored (the statement's ON CONFLICT DO
// NOTHING). Closes what it holds on every path out, rolling back an open transaction. Throws
// std::runtime_error (SQLite's message) or std::invalid_argument (a step the packed format cannot
// hold, a reason code with no text); nothing of that batch is stored then.
class GameWriter {
 public:
  GameWriter(const sqlite::Api& api, const std::string& path, const std::string& sql, std::vector<std::string> reasons,
             int busy_timeout_ms)
      : api_(api), reasons_(std::move(reasons)) {
    try {  // a constructor that throws runs no destructor: close here what was opened
      if (api_.open_v2(path.c_str(), &db_, sqlite::OPEN_READWRITE | sqlite::OPEN_NOMUTEX, nullptr) != sqlite::OK)
        fail("cannot open the database");
      api_.busy_timeout(db_, busy_timeout_ms);
      if (api_.exec(db_, "PRAGMA synchronous = NORMAL", nullptr, nullptr, nullptr) != sqlite::OK) fail("PRAGMA");
      const std::string checkpoint = "PRAGMA wal_autocheckpoint = " + std::to_string(WAL_AUTOCHECKPOINT_PAGES);
      if (api_.exec(db_, checkpoint.c_str(), nullptr, nullptr, nullptr) != sqlite::OK) fail("PRAGMA");
      if (api_.prepare_v2(db_, sql.c_str(), (int)sql.size(), &stmt_, nullptr) != sqlite::OK) fail("INSERT");
    } catch (...) {
      close();
      throw;
    }
  }
  GameWriter(const GameWriter&) = delete;
  GameWriter& operator=(const GameWriter&) = delete;
  ~GameWriter() { close(); }

  // Inserts every game of `b` in one transaction; returns the rows added.
  long long insert(const RunColumns& run, const BatchView& b) {
    if (api_.exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != sqlite::OK) fail("BEGIN");
    long long added = 0;
    try {
      added = insert_rows(run, b);
    } catch (...) {
      api_.reset(stmt_);
      api_.exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    if (api_.exec(db_, "COMMIT", nullptr, nullptr, nullptr) != sqlite::OK) {
      std::string why = api_.errmsg(db_);
      api_.exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw std::runtime_error("COMMIT: " + why);
    }
    return added;
  }

 private:
  void close() {
    if (stmt_) api_.finalize(stmt_);
    stmt_ = nullptr;
    if (db_) {
      if (!api_.get_autocommit(db_)) api_.exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      api_.close_v2(db_);
    }
    db_ = nullptr;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(what + ": " + (db_ ? api_.errmsg(db_) : "out of memory"));
  }
  int text(int col, const std::string& s, bool present) {
    return present ? api_.bind_text(stmt_, col, s.data(), (int)s.size(), nullptr) : api_.bind_null(stmt_, col);
  }

  // n values as W-byte little-endian words, as the Python path's numpy arrays. With W a constant
  // the compiler merges each word's byte stores into one store on a little-endian host (the
  // loop over a run-time width cost about 1.7k instructions a square8 game).
  template <int W>
  static void put_le(const uint64_t* v, int64_t n, uint8_t* out) {
    for (int64_t i = 0; i < n; i++, out += W)
      for (int k = 0; k < W; k++) out[k] = (uint8_t)(v[i] >> (8 * k));
  }

  long long insert_rows(const RunColumns& run, const BatchView& b) {
    // The run's columns: bound once a batch, kept by sqlite3_reset for every row (the strings
    // are the caller's and outlive the transaction).
    int rc = text(1, run.board, true) | api_.bind_int64(stmt_, 2, run.num_players) | text(3, run.policy, true) |
             api_.bind_int64(stmt_, 4, run.seed) | text(6, run.engine_version, run.has_engine_version) |
             text(7, run.host, run.has_host) |
             (run.has_max_moves ? api_.bind_int64(stmt_, 8, run.max_moves) : api_.bind_null(stmt_, 8)) |
             text(13, run.started_at, true) | text(15, run.created_at, true) | text(16, run.parity_status, true) |
             api_.bind_int64(stmt_, 17, run.stored_kind);
    if (rc != sqlite::OK) fail("binding the run's columns");
    const int width = run.keep_low32 ? 4 : 8;  // bytes of each step's stored hash
    long long added = 0;
    for (size_t g = 0; g < b.games; g++) {
      const int64_t a = b.offsets[g], n = b.offsets[g + 1] - a;
      // Bound without a copy (SQLITE_STATIC), so they must outlive sqlite3_step: the caller's
      // packed steps, or members, reused. A null pointer would bind NULL, not an empty blob: an
      // empty hashes blob points into the steps, which are never a null pointer.
      const uint8_t *steps, *end;
      if (b.packed) {
        steps = b.packed + b.packed_offsets[g];
        end = b.packed + b.packed_offsets[g + 1];
      } else {
        steps_.resize((size_t)n * steppack::MAX_STEP_BYTES + 1);
        steps = steps_.data();
        end = steppack::pack_game(b.moves + a, b.phases + a, b.players + a, n, steps_.data(), a);
      }
      hashes_.resize((size_t)n * width);
      if (width == 4) put_le<4>(b.hashes + a, n, hashes_.data());
      else put_le<8>(b.hashes + a, n, hashes_.data());
      if (b.reason[g] >= reasons_.size())
        throw std::invalid_argument("reason code " + std::to_string(b.reason[g]) + " of game " + std::to_string(g) +
                                    " is not a victory reason");
      const std::string& why = reasons_[b.reason[g]];
      double ms = b.seconds[g] * 1000.0;  // rounded half to even, as numpy's rint on the Python path
      long long duration = std::isfinite(ms) && std::fabs(ms) < 9e15 ? (long long)std::nearbyint(ms) : 0;
      rc = api_.bind_int64(stmt_, 5, b.game_index[g]) | api_.bind_int64(stmt_, 9, b.winner[g]) |
           text(10, why, !why.empty()) | api_.bind_int64(stmt_, 11, b.move_count[g]) |
           api_.bind_int64(stmt_, 12, b.capped[g] != 0) | api_.bind_int64(stmt_, 14, duration) |
           ((run.keep_low32 && n > 0) ? api_.bind_int64(stmt_, 18, (long long)b.hashes[a + n - 1])
                                      : api_.bind_null(stmt_, 18)) |
           api_.bind_blob(stmt_, 19, steps, (int)(end - steps), nullptr) |
           api_.bind_blob(stmt_, 20, hashes_.empty() ? steps : hashes_.data(), (int)hashes_.size(), nullptr);
      if (rc != sqlite::OK) fail("binding game " + std::to_string(b.game_index[g]));
      if (api_.step(stmt_) != sqlite::DONE) fail("inserting game " + std::to_string(b.game_index[g]));
      added += api_.changes(db_);
      api_.reset(stmt_);
    }
    return added;
  }

  const sqlite::Api& api_;
  std::vector<std::string> reasons_;
  sqlite::sqlite3* db_ = nullptr;
  sqlite::sqlite3_stmt* stmt_ = nullptr;
  std::vector<uint8_t> steps_, hashes_;
};

// One batch on a connection of its own (GameDB.insert_batch's native path).
inline long long insert_games(const sqlite::Api& api, const std::string& path, const std::string& sql,
                              const RunColumns& run, const BatchView& b, const std::vector<std::string>& reasons,
                              int busy_timeout_ms) {
  GameWriter writer(api, path, sql, reasons, busy_timeout_ms);
  return writer.insert(run, b);
}

}  // namespace dbwrite
}  // namespace rr

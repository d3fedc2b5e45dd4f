// Self-play straight into the game DB: native threads play chunks of game indices and commit
// each chunk as one transaction, in index order, through one GameWriter (db/game_writer.h). No
// Python object is made per game or per batch, and `threads` is the whole cost: each thread
// plays and writes in turn (a run on one thread uses one core), and while one thread writes
// the others play. Host only (std::thread, SQLite).
#pragma once
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "db/game_writer.h"
#include "selfplay/batch_runner.h"

namespace rr {

// One chunk's games as flat arrays (the layout of a _core.selfplay_batch result, but each
// game's steps already in the DB's packed form), reused from chunk to chunk so that steady
// play allocates nothing.
struct FlatBatch {
  size_t chunk = 0;
  std::string started_at;  // when the chunk began to play (stored per row, as the Python path)
  std::vector<int64_t> game_index, offsets{0}, packed_offsets{0};
  std::vector<int32_t> move_count;
  std::vector<uint8_t> winner, reason, capped;
  std::vector<double> seconds;
  std::vector<uint64_t> hashes;
  std::vector<uint8_t> packed;  // the chunk's packed steps: packed_len bytes in use
  size_t packed_len = 0;

  void clear() {
    game_index.clear();
    offsets.assign(1, 0);
    packed_offsets.assign(1, 0);
    move_count.clear();
    winner.clear();
    reason.clear();
    capped.clear();
    seconds.clear();
    hashes.clear();
    packed_len = 0;
  }
  // Room for one more packed step at packed.data() + packed_len (grown by doubling: the bytes
  // are zeroed only when the buffer grows, and a recycled batch keeps its size).
  uint8_t* step_room() {
    if (packed.size() - packed_len < steppack::MAX_STEP_BYTES)
      packed.resize(std::max(2 * packed.size(), packed_len + steppack::MAX_STEP_BYTES + 4096));
    return packed.data() + packed_len;
  }
  dbwrite::BatchView view() const {
    dbwrite::BatchView b;
    b.games = game_index.size();
    b.game_index = game_index.data();
    b.offsets = offsets.data();
    b.move_count = move_count.data();
    b.winner = winner.data();
    b.reason = reason.data();
    b.capped = capped.data();
    b.seconds = seconds.data();
    b.hashes = hashes.data();
    b.packed = packed.data();
    b.packed_offsets = packed_offsets.data();
    return b;
  }
};

// Records each step of a game into a FlatBatch as the game DB stores it: the step packed
// (export/step_pack.h) and its hash. Packing as the moves are played, instead of keeping 16-byte
// move records for the writer to pack, saves the chunk a pass over its steps and most of its
// memory (about 2.5 KB a square8 game).
struct PackedStepRecorder {
  FlatBatch* out;
  uint8_t expect_mover = 1;  // pack_step's state: the player to move before the next step
  int64_t steps = 0;
  bool wants_hash() const { return true; }
  void step(const Move& m, uint64_t h, uint8_t phase, uint8_t player) {
    uint8_t* end = steppack::pack_step(m, phase, player, expect_mover, out->step_room(), steps++);
    out->packed_len = (size_t)(end - out->packed.data());
    out->hashes.push_back(h);
  }
};

// UTC now as ISO 8601 with "+00:00", to the second or the millisecond: the strings Python's
// datetime.now(timezone.utc).isoformat(timespec=...) gives (the other writer paths store those).
inline std::string utc_iso(bool millis) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  long ms = (long)(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  if (ms < 0) ms += 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (millis) n += std::snprintf(buf + n, sizeof buf - n, ".%03ld", ms);
  std::snprintf(buf + n, sizeof buf - n, "+00:00");
  return buf;
}

// What a run added, for the summary and for progress (counted over the committed chunks).
struct DbRunTotals {
  long long added = 0, played = 0, moves = 0, capped = 0;
  long long wins[MAX_PLAYERS + 1] = {};
  std::vector<long long> reasons;
};

// The game indices to play, as ascending half-open runs [a, b), cut into chunks of `size`
// consecutive indices (across runs), one at a time: memory follows the gaps, not the games.
class ChunkCursor {
 public:
  ChunkCursor(std::vector<std::pair<int64_t, int64_t>> runs, size_t size) : runs_(std::move(runs)), size_(size) {}
  bool next(std::vector<int64_t>& out) {
    out.clear();
    while (out.size() < size_ && run_ < runs_.size()) {
      int64_t& a = runs_[run_].first;
      const int64_t b = runs_[run_].second;
      while (a < b && out.size() < size_) out.push_back(a++);
      if (a >= b) run_++;
    }
    return !out.empty();
  }

 private:
  std::vector<std::pair<int64_t, int64_t>> runs_;
  size_t size_, run_ = 0;
};

// A run: the chunks (committed in index order), what the rows share, and the writer. run()
// returns when every chunk is committed, the run is cancelled (workers stop before their next
// game, the chunk in flight is dropped), or a chunk fails (then the first error is rethrown;
// committed chunks stay).
class DbRun {
 public:
  DbRun(const BatchOptions& play, ChunkCursor chunks, dbwrite::GameWriter& writer, dbwrite::RunColumns run,
        size_t num_reasons)
      : play_(play), chunks_(std::move(chunks)), writer_(writer), columns_(std::move(run)) {
    totals_.reasons.assign(num_reasons, 0);
  }

  // Runs on play.threads native threads; the calling thread waits in `wait_hook` between
  // commits (it returns false to cancel: e.g. a pending KeyboardInterrupt).
  template <class WaitHook>
  void run(WaitHook&& wait_hook) {
    const int n = workers();
    std::vector<std::thread> pool;
    {
      JoinAll join_all{pool};
      for (int t = 0; t < n; t++) pool.emplace_back([this] { worker(); });
      std::unique_lock<std::mutex> lock(mu_);
      while (!(finished_ == pool.size())) {
        lock.unlock();
        bool go_on;
        try {
          go_on = wait_hook();
        } catch (...) {
          stop();  // the pool is joined on the way out: it must stop first
          throw;
        }
        if (!go_on) stop();
        lock.lock();
        if (finished_ == pool.size()) break;
        changed_.wait_for(lock, std::chrono::milliseconds(100));
      }
    }
    if (error_) std::rethrow_exception(error_);
  }

  // A snapshot of what is committed so far (for progress, from any thread).
  DbRunTotals totals() {
    std::lock_guard<std::mutex> lock(mu_);
    return totals_;
  }
  void stop() {
    cancel_.store(true);
    changed_.notify_all();
  }

 private:
  // Per-thread play buffers (State, Scratch, the move list: about 150 KB together).
  struct Work {
    std::unique_ptr<State> s{new State};
    std::unique_ptr<Scratch> sc{new Scratch};
    std::unique_ptr<MoveList> l{new MoveList};
  };

  void worker() {
    std::unique_ptr<FlatBatch> batch(new FlatBatch);
    try {
      Work w;
      std::vector<int64_t> indices;
      for (;;) {
        size_t j;
        {
          // Claim the next chunk, but stay at most 2 chunks a thread ahead of the commits, so a
          // slow chunk (a long game) cannot make the finished ones pile up in memory.
          std::unique_lock<std::mutex> lock(mu_);
          changed_.wait(lock, [&] { return cancel_.load() || next_chunk_ < next_commit_ + 2 * (size_t)workers(); });
          if (cancel_.load() || !chunks_.next(indices)) break;
          j = next_chunk_++;
        }
        play_chunk(j, indices, w, *batch);
        if (cancel_.load()) break;
        batch = deposit(std::move(batch));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
      cancel_.store(true);
    }
    std::lock_guard<std::mutex> lock(mu_);
    finished_++;
    changed_.notify_all();
  }

  int workers() const { return std::max(1, play_.threads); }

  void play_chunk(size_t j, const std::vector<int64_t>& indices, Work& w, FlatBatch& b) {
    const Geometry& g = host_geometry(play_.board);
    b.clear();
    b.chunk = j;
    b.started_at = utc_iso(false);
    for (int64_t index : indices) {
      if (cancel_.load(std::memory_order_relaxed)) return;
      auto t0 = std::chrono::steady_clock::now();
      PackedStepRecorder rec{&b};
      bool finished = play_game(g, *w.s, *w.sc, ListPicker{w.l.get()}, play_.seed, (uint64_t)index, play_.num_players,
                                play_.policy, play_.max_moves, rec);
      b.game_index.push_back(index);
      b.offsets.push_back((int64_t)b.hashes.size());
      b.packed_offsets.push_back((int64_t)b.packed_len);
      b.move_count.push_back(w.s->move_count);
      b.winner.push_back(w.s->winner);
      b.reason.push_back(w.s->reason);
      b.capped.push_back(!finished);
      b.seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }

  // Hands a played chunk over; whichever thread finds the writer free commits every chunk that
  // is next in order. Returns an empty batch to play the next chunk into (a recycled one).
  std::unique_ptr<FlatBatch> deposit(std::unique_ptr<FlatBatch> b) {
    std::unique_lock<std::mutex> lock(mu_);
    ready_.emplace(b->chunk, std::move(b));
    while (!writing_ && !cancel_.load() && !ready_.empty() && ready_.begin()->first == next_commit_) {
      writing_ = true;
      std::unique_ptr<FlatBatch> next = std::move(ready_.begin()->second);
      ready_.erase(ready_.begin());
      lock.unlock();
      long long added = 0;
      try {
        dbwrite::RunColumns cols = columns_;
        cols.started_at = next->started_at;
        cols.created_at = utc_iso(true);
        added = writer_.insert(cols, next->view());
      } catch (...) {
        lock.lock();
        writing_ = false;
        throw;
      }
      lock.lock();
      writing_ = false;
      count(*next, added);
      next_commit_++;
      spare_.push_back(std::move(next));
      changed_.notify_all();
    }
    std::unique_ptr<FlatBatch> out;
    if (!spare_.empty()) {
      out = std::move(spare_.back());
      spare_.pop_back();
    } else {
      out.reset(new FlatBatch);
    }
    return out;
  }

  void count(const FlatBatch& b, long long added) {  // under mu_
    totals_.added += added;
    totals_.played += (long long)b.game_index.size();
    totals_.moves += (long long)b.hashes.size();
    for (size_t g = 0; g < b.game_index.size(); g++) {
      totals_.capped += b.capped[g];
      if (b.winner[g] <= MAX_PLAYERS) totals_.wins[b.winner[g]]++;
      if (b.reason[g] < totals_.reasons.size()) totals_.reasons[b.reason[g]]++;
    }
  }

  BatchOptions play_;
  ChunkCursor chunks_;
  dbwrite::GameWriter& writer_;
  dbwrite::RunColumns columns_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::atomic<bool> cancel_{false};
  size_t next_chunk_ = 0, next_commit_ = 0, finished_ = 0;
  bool writing_ = false;
  std::map<size_t, std::unique_ptr<FlatBatch>> ready_;
  std::vector<std::unique_ptr<FlatBatch>> spare_;
  DbRunTotals totals_;
  std::exception_ptr error_;
};

}  // namespace rr

// The game DB's packed step blob (schema 2, docs/game_db.md "The steps blob"): a game's move
// records with the phase and player after each move, in 2 to 6 bytes a step instead of 18.
// Lossless for any 16-byte record. Host only (the DB is written and read on the CPU).
//
// Per step:
//   byte 0: type (bits 0-4) | phase after the move (bits 5-7)
//   byte 1: player after the move - 1 (bits 0-1) | which fields follow (bits 2-7):
//           from, to, target, count, line (start, dir, len), extra
//   then the fields that are present, in that order: cells as LEB128 varints of their 16-bit
//   value (1 byte below 128), count as a byte, a line as varint start + dir byte + len byte,
//   extra as a mask byte (mover, window, context, option) and one byte per set bit.
// A field is present when it differs from make_move's default (cells -1, count/dir/len 0,
// window 255, context/option 0). The mover is present only when it is not the player to move
// after the previous step (player 1 before the first): a legal move is always by the player to
// move, so self-play never stores it.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/defs.h"

namespace rr {
namespace steppack {

enum : uint8_t { F_FROM = 1 << 2, F_TO = 1 << 3, F_TARGET = 1 << 4, F_COUNT = 1 << 5, F_LINE = 1 << 6, F_EXTRA = 1 << 7 };
enum : uint8_t { X_MOVER = 1, X_WINDOW = 2, X_CONTEXT = 4, X_OPTION = 8 };

// The most bytes one step can take (2 + three 3-byte cells + count + line 5 + extra 5).
constexpr size_t MAX_STEP_BYTES = 22;

inline void put_varint(uint8_t*& w, uint16_t v) {
  while (v >= 0x80) {
    *w++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *w++ = (uint8_t)v;
}

// Out of line, so that pack_step stays small enough to inline into the self-play recorder.
[[noreturn]] __attribute__((noinline, cold)) inline void unpackable_step(int64_t step, int type, int phase,
                                                                          int player) {
  throw std::invalid_argument("step " + std::to_string(step) + ": type " + std::to_string(type) + ", phase " +
                              std::to_string(phase) + ", player " + std::to_string(player) +
                              " do not fit the packed step format");
}

// Writes one step at w (room for MAX_STEP_BYTES) and returns the end. `expect_mover` is the
// player to move before it (1 before a game's first step); it becomes the player after it.
// Throws std::invalid_argument for values the format cannot hold (type >= 32, phase >= 8,
// player after not 1..4), naming the step `step`.
inline uint8_t* pack_step(const Move& m, uint8_t phase, uint8_t player, uint8_t& expect_mover, uint8_t* w,
                          int64_t step) {
  if (__builtin_expect(m.type >= 32 || phase >= 8 || player < 1 || player > 4, 0))
    unpackable_step(step, m.type, phase, player);
  uint8_t flags = (uint8_t)(player - 1);
  if (m.from != NO_CELL) flags |= F_FROM;
  if (m.to != NO_CELL) flags |= F_TO;
  if (m.target != NO_CELL) flags |= F_TARGET;
  if (m.count != 0) flags |= F_COUNT;
  if (m.line_start != NO_CELL || m.line_dir != 0 || m.line_len != 0) flags |= F_LINE;
  uint8_t extra = 0;
  if (m.player != expect_mover) extra |= X_MOVER;
  if (m.window != WINDOW_ALL) extra |= X_WINDOW;
  if (m.context != 0) extra |= X_CONTEXT;
  if (m.option != 0) extra |= X_OPTION;
  if (extra) flags |= F_EXTRA;
  *w++ = ((uint8_t)(m.type | (phase << 5)));
  *w++ = (flags);
  if (flags & F_FROM) put_varint(w, (uint16_t)m.from);
  if (flags & F_TO) put_varint(w, (uint16_t)m.to);
  if (flags & F_TARGET) put_varint(w, (uint16_t)m.target);
  if (flags & F_COUNT) *w++ = (m.count);
  if (flags & F_LINE) {
    put_varint(w, (uint16_t)m.line_start);
    *w++ = (m.line_dir);
    *w++ = (m.line_len);
  }
  if (extra) {
    *w++ = (extra);
    if (extra & X_MOVER) *w++ = (m.player);
    if (extra & X_WINDOW) *w++ = (m.window);
    if (extra & X_CONTEXT) *w++ = (m.context);
    if (extra & X_OPTION) *w++ = (m.option);
  }
  expect_mover = player;
  return w;
}

// Writes one game's steps at w (room for n * MAX_STEP_BYTES) and returns the end; `step0`
// numbers the steps in pack_step's message.
inline uint8_t* pack_game(const Move* moves, const uint8_t* phases, const uint8_t* players, int64_t n, uint8_t* w,
                          int64_t step0 = 0) {
  uint8_t expect_mover = 1;
  for (int64_t i = 0; i < n; i++) w = pack_step(moves[i], phases[i], players[i], expect_mover, w, step0 + i);
  return w;
}

struct Reader {
  const uint8_t* p;
  size_t n, at = 0;
  int64_t step = 0;
  [[noreturn]] void fail(const char* what) const {
    throw std::invalid_argument("packed steps: " + std::string(what) + " at step " + std::to_string(step) +
                                " (byte " + std::to_string(at) + " of " + std::to_string(n) + ")");
  }
  uint8_t byte() {
    if (at >= n) fail("truncated");
    return p[at++];
  }
  int16_t cell() {
    uint32_t v = 0;
    for (int shift = 0;; shift += 7) {
      uint8_t b = byte();
      v |= (uint32_t)(b & 0x7F) << shift;
      if (!(b & 0x80)) break;
      if (shift >= 14) fail("overlong varint");
    }
    if (v > 0xFFFF) fail("cell out of range");
    return (int16_t)(uint16_t)v;
  }
};

// Decodes exactly `count` steps from blob[0..len) (all of it must be used). Throws
// std::invalid_argument on a malformed blob, naming the step.
inline void unpack_game(const uint8_t* blob, size_t len, int64_t count, Move* moves, uint8_t* phases,
                        uint8_t* players) {
  Reader r{blob, len};
  uint8_t expect_mover = 1;
  for (int64_t i = 0; i < count; i++) {
    r.step = i;
    uint8_t b0 = r.byte(), flags = r.byte();
    Move m = make_move((uint8_t)(b0 & 0x1F), expect_mover);
    phases[i] = (uint8_t)(b0 >> 5);
    players[i] = (uint8_t)((flags & 3) + 1);
    if (flags & F_FROM) m.from = r.cell();
    if (flags & F_TO) m.to = r.cell();
    if (flags & F_TARGET) m.target = r.cell();
    if (flags & F_COUNT) m.count = r.byte();
    if (flags & F_LINE) {
      m.line_start = r.cell();
      m.line_dir = r.byte();
      m.line_len = r.byte();
    }
    if (flags & F_EXTRA) {
      uint8_t extra = r.byte();
      if (extra & ~(X_MOVER | X_WINDOW | X_CONTEXT | X_OPTION)) r.fail("unknown extra field");
      if (extra & X_MOVER) m.player = r.byte();
      if (extra & X_WINDOW) m.window = r.byte();
      if (extra & X_CONTEXT) m.context = r.byte();
      if (extra & X_OPTION) m.option = r.byte();
    }
    moves[i] = m;
    expect_mover = players[i];
  }
  r.step = count;
  if (r.at != len) r.fail("trailing bytes");
}

}  // namespace steppack
}  // namespace rr

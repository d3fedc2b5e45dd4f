#!/usr/bin/env node
// ringrift TS parity bridge.
//
// Replays games through the TypeScript rules engine of a RingRift checkout, driven by the same
// host layer that recorded the reference games (RULES.md section H), and compares every step
// with what the caller expects.  Written for ringrift (MIT); it contains no upstream code: the
// engine modules are loaded from the checkout at run time.
//
//   node bridge.mjs --ts-root PATH [--cache-dir DIR]
//
// Protocol (one JSON object per line, both ways; stdout carries nothing else):
//   bridge -> {"type":"ready","protocol":1,"tsRoot":...,"bundle":"cached"|"built","ms":...}
//             or {"type":"fatal","error":...} and exit status 1.
//   caller -> {"type":"game","id":ID,"board":B,"numPlayers":N,"rulesOptions":{...}|null,
//              "initialHash":H?,"moves":[Move JSON...],
//              "expect":[{"h":HASH,"st":STATUS,"ph":PHASE?,"p":PLAYER?,"n":COUNT?}...],
//              "result":{"status":S,"winner":W|null,"reason":R|null}?,"debug":BOOL?}
//   bridge -> {"type":"result","id":ID,"ok":true,"steps":K,"ms":T,"final":{...}}
//             {"type":"result","id":ID,"ok":false,"steps":K,"step":I|null,"where":W,
//              "diffs":[[what,expected,got]...],"detail":TEXT,"final":{...},"debug":{...}?}
//   caller -> {"type":"play","id":ID,"board":B,"numPlayers":N,"games":G,"seed":S,"warmup":W?,
//              "maxMoves":M?,"moves":BOOL?}
//   bridge -> {"type":"played","id":ID,"games":G,"moves":TOTAL,"completed":K,"capped":C,
//              "cpuUser":US,"cpuSystem":US,"wallMs":T,"results":[{"index":I,"moves":K,"status":...,
//              "winner":...,"hash":...,"moveList":[...]?}...]}
//     Random play (the bench's reference anchor): G games from the initial state, each move drawn
//     uniformly from the host layer's legal surface (legalSurface + applyHost, the code path that
//     replays use) by a PRNG seeded from (S, game index).  W warm-up games (seeds from S + 2^31)
//     run before the clock starts.  cpuUser/cpuSystem: this process's CPU time over the counted
//     games (process.cpuUsage, microseconds, all of its threads).  "moves":true lists each game's
//     moves as Move JSON.  A game still active after M moves (default 100000) counts as capped.
//   caller -> {"type":"ping"}  bridge -> {"type":"pong"};  caller -> {"type":"quit"}: exit 0.
//   A request that cannot be read gets {"type":"error","id":ID|null,"error":TEXT}.
// "where": initial | legal | move | after | result | engine | input.  Phase and player are
// compared only while the expected status is "active"; "n" (the caller's legal-move count)
// only when given.

import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

const PROTOCOL = 1;

// stdout is the protocol channel: anything the engine logs goes to stderr.
const out = process.stdout.write.bind(process.stdout);
for (const name of ['log', 'info', 'warn', 'debug', 'trace']) {
  console[name] = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
}
// The engine reads its debug flags from process.env on hot paths; a plain copy reads the same
// values without the per-access cost of the live environment object.
process.env = { ...process.env };

function send(obj) {
  out(JSON.stringify(obj) + '\n');
}

function parseArgs(argv) {
  const args = { tsRoot: process.env.RINGRIFT_TS_ROOT || '', cacheDir: process.env.RINGRIFT_TS_BRIDGE_CACHE || '' };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--ts-root') args.tsRoot = argv[++i] || '';
    else if (argv[i] === '--cache-dir') args.cacheDir = argv[++i] || '';
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!args.tsRoot) throw new Error('no TS checkout given (--ts-root PATH or RINGRIFT_TS_ROOT)');
  return args;
}

// ---- loading the engine ------------------------------------------------------------------------

// The modules the host layer needs, re-exported from one entry that esbuild bundles (CommonJS).
const ENTRY = `
export { processTurn, getValidMoves } from './src/shared/engine/orchestration/turnOrchestrator';
export { createInitialGameState } from './src/shared/engine/initialState';
export { fingerprintGameState, hashGameStateSHA256 } from './src/shared/engine/core';
export { serializeGameState } from './src/shared/engine/contracts/serialization';
export {
  BOARD_CONFIGS, positionToString, enumeratePlacementPositions, validatePlacementOnBoardAggregate,
  findLinesForPlayer, enumerateChooseLineRewardMoves, evaluateVictory, shouldOfferSwapSides,
  createLpsTrackingState, updateLpsTracking, evaluateLpsVictory, playerHasMaterial, hasAnyRealAction,
  hasAnyPlacementForPlayer, hasAnyMovementForPlayer, hasAnyCaptureForPlayer,
} from './src/shared/engine/index';
`;
const REQUIRED = ['src/shared/engine/orchestration/turnOrchestrator.ts', 'src/shared/engine/index.ts',
  'src/shared/engine/initialState.ts', 'package.json'];

function defaultCacheDir() {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir() || os.tmpdir(), '.cache');
  return path.join(base, 'ringrift', 'ts-bridge');
}

function statSig(file) {
  try {
    const s = fs.statSync(file);
    return `${s.size}:${s.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

function loadEngine(tsRoot, cacheDir) {
  const t0 = Date.now();
  const root = fs.realpathSync(tsRoot);
  for (const rel of REQUIRED) {
    if (!fs.existsSync(path.join(root, rel))) {
      throw new Error(`${root} is not a RingRift checkout: ${rel} is missing`);
    }
  }
  const req = createRequire(path.join(root, 'package.json'));
  let esbuild;
  try {
    esbuild = req('esbuild');
  } catch (e) {
    throw new Error(`cannot load esbuild from ${root}/node_modules (run 'npm ci' in the checkout): ${e.message}`);
  }
  const dir = cacheDir || defaultCacheDir();
  const key = createHash('sha256').update([root, ENTRY, esbuild.version, PROTOCOL].join('\0')).digest('hex').slice(0, 24);
  const bundlePath = path.join(dir, `engine-${key}.cjs`);
  const manifestPath = path.join(dir, `engine-${key}.json`);

  // Reuse the cached bundle while every input file is unchanged (size and mtime).
  let how = 'built';
  let fresh = false;
  try {
    const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
    fresh = fs.existsSync(bundlePath) &&
      Object.entries(manifest.inputs).every(([file, sig]) => statSig(path.join(root, file)) === sig);
  } catch {
    fresh = false;
  }
  if (fresh) {
    how = 'cached';
  } else {
    let result;
    try {
      result = esbuild.buildSync({
        stdin: { contents: ENTRY, resolveDir: root, loader: 'ts', sourcefile: 'ringrift-ts-bridge-entry.ts' },
        bundle: true, platform: 'node', format: 'cjs', target: 'node18', write: false, metafile: true,
        logLevel: 'silent', absWorkingDir: root,
      });
    } catch (e) {
      const msgs = (e.errors || []).slice(0, 5).map((m) => `${m.location ? m.location.file + ':' + m.location.line + ': ' : ''}${m.text}`);
      throw new Error(`esbuild could not bundle the engine from ${root}: ${msgs.join('; ') || e.message}`);
    }
    const inputs = {};
    for (const file of Object.keys(result.metafile.inputs)) {
      if (file.startsWith('<')) continue;
      inputs[file] = statSig(path.join(root, file));
    }
    fs.mkdirSync(dir, { recursive: true });
    const tmp = `${bundlePath}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, result.outputFiles[0].contents);
    fs.renameSync(tmp, bundlePath);
    fs.writeFileSync(`${manifestPath}.${process.pid}.tmp`, JSON.stringify({ root, inputs }));
    fs.renameSync(`${manifestPath}.${process.pid}.tmp`, manifestPath);
  }
  const engine = createRequire(bundlePath)(bundlePath);
  return { engine, root, how, ms: Date.now() - t0 };
}

// ---- move identity -----------------------------------------------------------------------------

const NO_PAYLOAD = new Set(['skip_placement', 'no_placement_action', 'swap_sides', 'skip_capture',
  'no_movement_action', 'skip_recovery', 'no_line_action', 'skip_territory_processing',
  'no_territory_action', 'resign', 'timeout']);
const VOLATILE = new Set(['id', 'timestamp', 'thinkTime', 'moveNumber']);

function xy(p, what) {
  if (!p || typeof p.x !== 'number' || typeof p.y !== 'number') throw new Error(`${what}: missing position`);
  return `${p.x},${p.y}`;
}
function xyList(ps, what) {
  if (ps == null) return '';
  if (!Array.isArray(ps)) throw new Error(`${what}: expected a list of positions`);
  return ps.map((p) => xy(p, what)).sort().join(';');
}

// Content key of a Move: bookkeeping fields (id, timestamp, ...) never take part.
function moveKey(m) {
  if (!m || typeof m !== 'object') throw new Error('a move must be an object');
  const t = m.type;
  const head = `${t}|${m.player}`;
  if (NO_PAYLOAD.has(t)) return head;
  switch (t) {
    case 'place_ring':
      return `${head}|${xy(m.to, 'place_ring.to')}|${m.placementCount || 1}`;
    case 'move_stack':
      return `${head}|${xy(m.from, 'from')}|${xy(m.to, 'to')}`;
    case 'overtaking_capture':
    case 'continue_capture_segment':
      return `${head}|${xy(m.from, 'from')}|${xy(m.captureTarget, 'captureTarget')}|${xy(m.to, 'to')}`;
    case 'recovery_slide': {
      const mode = m.recoveryMode;
      const option = mode === 'line' ? (m.recoveryOption ?? m.option ?? 1) : '';
      return `${head}|${xy(m.from, 'from')}|${xy(m.to, 'to')}|${mode}|${option}|${xyList(m.collapsePositions, 'collapsePositions')}`;
    }
    case 'process_line':
    case 'choose_line_option': {
      const line0 = (m.formedLines || [])[0];
      if (!line0) throw new Error(`${t}: missing formedLines[0]`);
      const line = xyList(line0.positions, 'formedLines[0].positions');
      if (t === 'process_line') return `${head}|${line}`;
      return `${head}|${line}|${xyList(m.collapsedMarkers, 'collapsedMarkers') || line}`;
    }
    case 'choose_territory_option': {
      const r = (m.disconnectedRegions || [])[0];
      if (!r) throw new Error('choose_territory_option: missing disconnectedRegions[0]');
      return `${head}|${xyList(r.spaces, 'spaces')}|${r.controllingPlayer}`;
    }
    case 'eliminate_rings_from_stack':
      return `${head}|${xy(m.to, 'to')}|${m.eliminationContext || 'territory'}`;
    case 'forced_elimination':
      return `${head}|${xy(m.to, 'to')}`;
    default:
      throw new Error(`unknown move type ${JSON.stringify(t)}`);
  }
}

function plainMove(m) {
  const o = {};
  for (const [k, v] of Object.entries(m)) if (!VOLATILE.has(k) && v !== undefined) o[k] = v;
  return o;
}

// ---- the host layer (RULES.md section H) -------------------------------------------------------

function bookkeeping(state, type) {
  const n = state.moveHistory.length + 1;
  return { id: `${type}-${n}`, type, player: state.currentPlayer, to: { x: 0, y: 0 },
    timestamp: new Date(0), thinkTime: 0, moveNumber: n };
}

// Ring placements as the backend lists them: counts 1..3 on an empty cell, 1 on a stack, each
// count validated on its own.
function backendPlacements(E, state, player) {
  const ps = state.players.find((p) => p.playerNumber === player);
  if (!ps || ps.ringsInHand <= 0) return [];
  const board = state.board;
  const ctx = { boardType: board.type, player, ringsInHand: ps.ringsInHand,
    ringsPerPlayerCap: E.BOARD_CONFIGS[board.type].ringsPerPlayer };
  const n = state.moveHistory.length + 1;
  const moves = [];
  for (const pos of E.enumeratePlacementPositions(state, player)) {
    const key = E.positionToString(pos);
    const stack = board.stacks.get(key);
    const onStack = !!(stack && stack.rings.length > 0);
    for (let count = 1; count <= (onStack ? 1 : 3); count++) {
      if (!E.validatePlacementOnBoardAggregate(board, pos, count, ctx).valid) continue;
      moves.push({ id: `place-${key}-x${count}`, type: 'place_ring', player, to: pos, placedOnStack: onStack,
        placementCount: count, timestamp: new Date(0), thinkTime: 0, moveNumber: n });
    }
  }
  return moves;
}

// The composite legal-move surface; the second value tells whether a no-op was synthesised.
function legalSurface(E, state) {
  if (state.gameStatus !== 'active') return [];
  const player = state.currentPlayer;
  const core = E.getValidMoves(state);
  let moves;
  switch (state.currentPhase) {
    case 'ring_placement':
      moves = [...backendPlacements(E, state, player), ...core.filter((m) => m.type !== 'place_ring')];
      if (E.shouldOfferSwapSides(state)) moves.push(bookkeeping(state, 'swap_sides'));
      break;
    case 'line_processing':
      if (state.pendingLineRewardElimination) {
        moves = core.filter((m) => m.type === 'eliminate_rings_from_stack');
      } else {
        moves = core.filter((m) => m.type === 'process_line');
        const lines = E.findLinesForPlayer(state.board, player);
        for (let i = 0; i < lines.length; i++) moves.push(...E.enumerateChooseLineRewardMoves(state, player, i));
      }
      if (moves.length === 0) moves = [bookkeeping(state, 'no_line_action')];
      break;
    case 'territory_processing':
      moves = core.length ? core : [bookkeeping(state, 'no_territory_action')];
      break;
    default:
      moves = core;
  }
  return moves;
}

function actionDelegates(E, state) {
  const turn = (pn) => ({
    hasPlacedThisTurn: pn === state.currentPlayer && Boolean(state.mustMoveFromStackKey),
    mustMoveFromStackKey: pn === state.currentPlayer ? (state.mustMoveFromStackKey ?? undefined) : undefined,
  });
  return {
    hasPlacement: (pn) => E.hasAnyPlacementForPlayer(state, pn),
    hasMovement: (pn) => E.hasAnyMovementForPlayer(state, pn, turn(pn)),
    hasCapture: (pn) => E.hasAnyCaptureForPlayer(state, pn, turn(pn)),
  };
}

function endGame(state, winner) {
  state.gameStatus = 'completed';
  state.winner = winner;
  state.currentPhase = 'game_over';
  state.currentPlayer = winner;
}

// One host step: transition function, history append, victory check, LPS at turn start.
function applyHost(E, game, move) {
  const prePhase = game.state.currentPhase;
  const res = E.processTurn(game.state, move);
  const next = { ...res.nextState, moveHistory: [...res.nextState.moveHistory, move] };
  if (next.gameStatus !== 'active' && !game.reason) {
    game.reason = (res.victoryResult && res.victoryResult.reason) || null;
    game.endedBy = 'orchestrator';
  }
  if (next.gameStatus === 'active') {
    const v = E.evaluateVictory(next);
    if (v.isGameOver && v.winner !== undefined) {
      endGame(next, v.winner);
      game.reason = v.reason || null;
      game.endedBy = 'host_victory';
    }
  }
  if (next.gameStatus === 'active' && next.currentPhase === 'ring_placement' && prePhase !== 'ring_placement') {
    const delegates = actionDelegates(E, next);
    const active = next.players.map((p) => p.playerNumber).filter((pn) => E.playerHasMaterial(next, pn));
    E.updateLpsTracking(game.lps, { currentPlayer: next.currentPlayer, activePlayers: active,
      hasRealAction: E.hasAnyRealAction(next, next.currentPlayer, delegates) });
    const lv = E.evaluateLpsVictory({ gameState: next, lps: game.lps,
      hasAnyRealAction: (pn) => E.hasAnyRealAction(next, pn, delegates),
      hasMaterial: (pn) => E.playerHasMaterial(next, pn) });
    if (lv.isVictory && lv.winner !== undefined) {
      endGame(next, lv.winner);
      game.reason = 'last_player_standing';
      game.endedBy = 'host_lps';
    }
  }
  game.state = next;
}

function newGame(E, board, numPlayers, rulesOptions) {
  if (!E.BOARD_CONFIGS[board]) throw new Error(`unknown board ${JSON.stringify(board)}`);
  if (![2, 3, 4].includes(numPlayers)) throw new Error(`numPlayers must be 2, 3 or 4, got ${JSON.stringify(numPlayers)}`);
  const players = [];
  for (let i = 1; i <= numPlayers; i++) {
    players.push({ id: `p${i}`, username: `p${i}`, type: 'ai', playerNumber: i, isReady: true,
      timeRemaining: 600000, ringsInHand: 0, eliminatedRings: 0, territorySpaces: 0 });
  }
  // H.1: 2-player games carry rulesOptions.swapRuleEnabled (false unless asked), 3-4 none.
  const opts = rulesOptions || (numPlayers === 2 ? { swapRuleEnabled: false } : undefined);
  const state = E.createInitialGameState('ringrift-ts-bridge', board, players,
    { initialTime: 600, increment: 0, type: 'rapid' }, false, 1, opts);
  state.gameStatus = 'active';
  return { state, lps: E.createLpsTrackingState(), reason: null, endedBy: null };
}

const normStatus = (s) => (s === 'finished' ? 'completed' : s);

function finalOf(E, game) {
  const s = game.state;
  return { status: normStatus(s.gameStatus), winner: s.winner ?? null, reason: game.reason,
    endedBy: game.endedBy, hash: E.hashGameStateSHA256(s), phase: s.currentPhase, player: s.currentPlayer,
    moves: s.moveHistory.length };
}

function snapshot(E, state) {
  try {
    return { state: E.serializeGameState({ ...state, moveHistory: [] }), fingerprint: E.fingerprintGameState(state),
      hash: E.hashGameStateSHA256(state) };
  } catch (e) {
    return { error: String(e && e.message || e) };
  }
}

function checkRequest(req) {
  if (typeof req.board !== 'string') throw new Error("field 'board' must be a string");
  if (!Number.isInteger(req.numPlayers)) throw new Error("field 'numPlayers' must be an integer");
  if (!Array.isArray(req.moves)) throw new Error("field 'moves' must be a list");
  if (req.expect != null && (!Array.isArray(req.expect) || req.expect.length !== req.moves.length)) {
    throw new Error(`field 'expect' must be a list as long as 'moves' (${req.moves.length})`);
  }
}

function replay(E, req) {
  const t0 = Date.now();
  const reply = { type: 'result', id: req.id ?? null, ok: true, steps: 0 };
  const fail = (step, where, diffs, detail, extra) => Object.assign(reply,
    { ok: false, step, where, diffs: diffs || [], detail: detail || '' }, extra || {});
  let game;
  try {
    checkRequest(req);
  } catch (e) {
    fail(null, 'input', [], e.message);
    reply.ms = Date.now() - t0;
    return reply;
  }
  const debug = !!req.debug;
  let step = null;
  let before = null;
  let surface = null;
  try {
    game = newGame(E, req.board, req.numPlayers, req.rulesOptions);
    const h0 = E.hashGameStateSHA256(game.state);
    if (req.initialHash && req.initialHash !== h0) {
      fail(null, 'initial', [['hash', req.initialHash, h0]], '');
    }
    for (let i = 0; reply.ok && i < req.moves.length; i++) {
      step = i;
      before = game.state;
      const exp = req.expect ? req.expect[i] : null;
      surface = legalSurface(E, before);
      if (exp && exp.n != null && exp.n !== surface.length) {
        fail(i, 'legal', [['legal move count', exp.n, surface.length]], '');
        break;
      }
      let key;
      try {
        key = moveKey(req.moves[i]);
      } catch (e) {
        fail(i, 'input', [], `move ${i} is malformed: ${e.message}`);
        break;
      }
      const move = surface.find((m) => moveKey(m) === key);
      if (!move) {
        fail(i, 'move', [], `move ${JSON.stringify(plainMove(req.moves[i]))} is not on the TS legal surface ` +
          `(${surface.length} moves, phase ${before.currentPhase}, player ${before.currentPlayer}, status ${before.gameStatus})`);
        break;
      }
      try {
        applyHost(E, game, move);
      } catch (e) {
        fail(i, 'move', [], `the TS engine rejected move ${JSON.stringify(plainMove(move))}: ${e && e.message || e}`);
        game.state = before;
        break;
      }
      if (exp) {
        const s = game.state;
        const diffs = [];
        const h = E.hashGameStateSHA256(s);
        const st = normStatus(s.gameStatus);
        if (exp.h != null && exp.h !== h) diffs.push(['hash', exp.h, h]);
        if (exp.st != null && exp.st !== st) diffs.push(['status', exp.st, st]);
        if (exp.st === 'active') {
          if (exp.ph != null && exp.ph !== s.currentPhase) diffs.push(['phase', exp.ph, s.currentPhase]);
          if (exp.p != null && exp.p !== s.currentPlayer) diffs.push(['player', exp.p, s.currentPlayer]);
        }
        if (diffs.length) {
          fail(i, 'after', diffs, '');
          break;
        }
      }
      reply.steps = i + 1;
    }
    if (reply.ok && req.result) {
      const f = finalOf(E, game);
      const diffs = [];
      for (const k of ['status', 'winner', 'reason']) {
        if (k in req.result && (req.result[k] ?? null) !== (f[k] ?? null)) diffs.push([k, req.result[k] ?? null, f[k] ?? null]);
      }
      if (diffs.length) fail(null, 'result', diffs, '');
    }
  } catch (e) {
    fail(step, 'engine', [], `${e && e.name || 'Error'}: ${e && e.message || e}`);
  }
  if (game) reply.final = finalOf(E, game);
  if (!reply.ok && debug && game) {
    reply.debug = { before: before ? snapshot(E, before) : null, after: snapshot(E, game.state),
      legal: surface ? surface.map(plainMove) : null };
  }
  reply.ms = Date.now() - t0;
  return reply;
}

// ---- seeded random play (the bench's reference anchor) -----------------------------------------

// mulberry32 over a seed mixed from (seed, game index): small, fast and the same on every Node.
function gameRng(seed, index) {
  let a = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
  a = Math.imul(a ^ (a >>> 16), 0x7feb352d) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function playOne(E, req, seed, index, maxMoves, keepMoves) {
  const game = newGame(E, req.board, req.numPlayers, req.rulesOptions);
  const rand = gameRng(seed, index);
  const played = keepMoves ? [] : null;
  let n = 0;
  while (game.state.gameStatus === 'active' && n < maxMoves) {
    const surface = legalSurface(E, game.state);
    if (surface.length === 0) throw new Error(`game ${index}: no legal move at move ${n} ` +
      `(phase ${game.state.currentPhase}, player ${game.state.currentPlayer})`);
    const move = surface[Math.floor(rand() * surface.length)];
    applyHost(E, game, move);
    if (played) played.push(plainMove(move));
    n++;
  }
  const s = game.state;
  const g = { index, moves: n, status: normStatus(s.gameStatus), winner: s.winner ?? null, reason: game.reason,
    hash: E.hashGameStateSHA256(s) };
  if (played) g.moveList = played;
  return g;
}

function checkPlayRequest(req) {
  if (typeof req.board !== 'string') throw new Error("field 'board' must be a string");
  if (!Number.isInteger(req.numPlayers)) throw new Error("field 'numPlayers' must be an integer");
  for (const [k, lo, hi] of [['games', 1, 1e6], ['seed', 0, 0xffffffff], ['warmup', 0, 1e4], ['maxMoves', 1, 1e7]]) {
    if (req[k] == null && k !== 'games' && k !== 'seed') continue;
    if (!Number.isInteger(req[k]) || req[k] < lo || req[k] > hi) {
      throw new Error(`field '${k}' must be an integer in ${lo}..${hi}, got ${JSON.stringify(req[k])}`);
    }
  }
}

function randomPlay(E, req) {
  const reply = { type: 'played', id: req.id ?? null };
  try {
    checkPlayRequest(req);
    const maxMoves = req.maxMoves ?? 100000;
    for (let i = 0; i < (req.warmup || 0); i++) playOne(E, req, (req.seed + 0x80000000) >>> 0, i, maxMoves, false);
    const games = [];
    const t0 = Date.now();
    const c0 = process.cpuUsage();
    for (let i = 0; i < req.games; i++) games.push(playOne(E, req, req.seed, i, maxMoves, !!req.moves));
    const cpu = process.cpuUsage(c0);
    Object.assign(reply, { games: games.length, moves: games.reduce((a, g) => a + g.moves, 0),
      completed: games.filter((g) => g.status !== 'active').length,
      capped: games.filter((g) => g.status === 'active').length,
      cpuUser: cpu.user, cpuSystem: cpu.system, wallMs: Date.now() - t0, results: games });
  } catch (e) {
    return { type: 'error', id: req.id ?? null, error: `random play failed: ${e && e.message || e}` };
  }
  return reply;
}

// ---- main loop ---------------------------------------------------------------------------------

function main() {
  let E;
  try {
    const args = parseArgs(process.argv.slice(2));
    const loaded = loadEngine(args.tsRoot, args.cacheDir);
    E = loaded.engine;
    send({ type: 'ready', protocol: PROTOCOL, requests: ['game', 'play', 'ping', 'quit'], tsRoot: loaded.root,
      bundle: loaded.how, ms: loaded.ms,
      node: process.version });
  } catch (e) {
    send({ type: 'fatal', error: String(e && e.message || e) });
    process.exitCode = 1;
    return;
  }
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let req;
    try {
      req = JSON.parse(line);
    } catch (e) {
      send({ type: 'error', id: null, error: `request is not JSON: ${e.message}` });
      return;
    }
    if (!req || typeof req !== 'object') {
      send({ type: 'error', id: null, error: 'request is not a JSON object' });
    } else if (req.type === 'game') {
      send(replay(E, req));
    } else if (req.type === 'play') {
      send(randomPlay(E, req));
    } else if (req.type === 'ping') {
      send({ type: 'pong', id: req.id ?? null });
    } else if (req.type === 'quit') {
      rl.close();
    } else {
      send({ type: 'error', id: req.id ?? null, error: `unknown request type ${JSON.stringify(req.type)}` });
    }
  });
  rl.on('close', () => process.stdout.write('', () => process.exit(0)));
}

main();

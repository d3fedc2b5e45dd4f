"""``ringrift-diff-bundle FILE...``: show what differs in a parity state bundle.

Prints the divergence, then a field-by-field difference of our state and the recorded
one (players' counters, stacks by key with their rings, markers, collapsed spaces, the
remaining board fields, phase/player/status, pending flags and other top-level fields)
and the fingerprint entries found on one side only.  Exit status as diff(1): 0 no
difference, 1 differences, 2 trouble.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .bundle import read_bundle
from .harness import move_text

ABSENT = object()
FP_SECTIONS = ("header", "players", "stacks", "markers", "collapsed")


def _v(x: Any) -> str:
    return "(absent)" if x is ABSENT else json.dumps(x, sort_keys=True, separators=(",", ":"))


def _diff_maps(title: str, ours: dict, theirs: dict, show=_v) -> list[str]:
    lines = []
    for key in sorted(set(ours) | set(theirs), key=_sort_key):
        a, b = ours.get(key, ABSENT), theirs.get(key, ABSENT)
        if a != b:
            a_txt = "(absent)" if a is ABSENT else show(a)
            b_txt = "(absent)" if b is ABSENT else show(b)
            lines.append(f"  {key}: ours {a_txt} | theirs {b_txt}")
    return [f"{title}:"] + lines if lines else []


def _sort_key(key):
    """Sort "x,y" cell keys numerically, anything else as text."""
    try:
        return (0, tuple(int(p) for p in str(key).split(",")), "")
    except ValueError:
        return (1, (), str(key))


def _stack(s: dict) -> str:
    return (f"rings {_v(s.get('rings'))} height {s.get('stackHeight')} cap {s.get('capHeight')} "
            f"player {s.get('controllingPlayer')}")


def _strip_position(cells: dict) -> dict:
    return {k: ({f: x for f, x in v.items() if f != "position"} if isinstance(v, dict) else v)
            for k, v in (cells or {}).items()}


# Fields either side writes only when set: absent on one side is a real difference.
OPTIONAL_FIELDS = ("winner", "mustMoveFromStackKey", "chainCapturePosition")


def _diff_fields(prefix: str, ours: dict, theirs: dict, skipped: list[str], group: str = "") -> list[str]:
    """Lines for fields whose values differ.  A field only one side writes at all (the
    two serializers need not emit the same optional extras) goes to ``skipped`` unless
    it is a pending flag or one of OPTIONAL_FIELDS."""
    lines = []
    for f in sorted(set(ours) | set(theirs)):
        a, b = ours.get(f, ABSENT), theirs.get(f, ABSENT)
        if a == b:
            continue
        if (a is ABSENT or b is ABSENT) and f not in OPTIONAL_FIELDS and not f.startswith("pending"):
            skipped.append(f"{group or prefix}{f} ({'theirs' if a is ABSENT else 'ours'})")
        else:
            lines.append(f"  {prefix}{f}: ours {_v(a)} | theirs {_v(b)}")
    return lines


def diff_states(ours: dict, theirs: dict) -> tuple[list[str], list[str]]:
    """Readable lines for every difference between two reference-shaped states, and the
    fields not compared because only one side writes them."""
    out: list[str] = []
    skipped: list[str] = []
    players_a = {p.get("playerNumber"): p for p in ours.get("players", [])}
    players_b = {p.get("playerNumber"): p for p in theirs.get("players", [])}
    lines = []
    for num in sorted(set(players_a) | set(players_b), key=str):
        if num not in players_a or num not in players_b:
            lines.append(f"  player {num}: only {'theirs' if num not in players_a else 'ours'}")
            continue
        lines += _diff_fields(f"player {num} ", players_a[num], players_b[num], skipped, "players.")
    if lines:
        out += ["players:"] + lines

    board_a, board_b = ours.get("board", {}), theirs.get("board", {})
    out += _diff_maps("stacks", _strip_position(board_a.get("stacks")),
                      _strip_position(board_b.get("stacks")), show=_stack)
    out += _diff_maps("markers", _strip_position(board_a.get("markers")), _strip_position(board_b.get("markers")))
    out += _diff_maps("collapsed spaces", board_a.get("collapsedSpaces") or {},
                      board_b.get("collapsedSpaces") or {})
    cells = ("stacks", "markers", "collapsedSpaces")
    lines = _diff_fields("board.", {k: v for k, v in board_a.items() if k not in cells},
                         {k: v for k, v in board_b.items() if k not in cells}, skipped)
    lines += _diff_fields("", {k: v for k, v in ours.items() if k not in ("board", "players")},
                          {k: v for k, v in theirs.items() if k not in ("board", "players")}, skipped)
    if lines:
        out += ["state:"] + lines
    return out, sorted(set(skipped))


def diff_fingerprints(ours: str, theirs: str) -> list[str]:
    """Fingerprint entries (split on '#' and '|') present on one side only, by section."""
    a_secs, b_secs = ours.split("#"), theirs.split("#")
    out = []
    for k in range(max(len(a_secs), len(b_secs))):
        name = FP_SECTIONS[k] if k < len(FP_SECTIONS) else f"section {k}"
        a = [e for e in (a_secs[k] if k < len(a_secs) else "").split("|") if e]
        b = [e for e in (b_secs[k] if k < len(b_secs) else "").split("|") if e]
        only_a = [e for e in a if e not in set(b)]
        only_b = [e for e in b if e not in set(a)]
        if only_a or only_b:
            out.append(f"  {name}: only ours {' '.join(only_a) or '-'} | only theirs {' '.join(only_b) or '-'}")
    return out


def describe_bundle(b: dict) -> tuple[list[str], bool]:
    """The report lines for one bundle and whether any difference was found."""
    at = f"step {b['step']}" if b.get("step") is not None else b.get("where", "")
    out = [f"{b.get('file')}:{b.get('line')} game {b.get('gameIndex')} {b.get('gameId')} {at}",
           f"divergence: {b.get('divergence')}"]
    if b.get("move") is not None:
        out.append(f"move: {move_text(b['move'])}")
    compared = b.get("compared", "after")
    h = b.get("hash") or {}
    out.append(f"hash ({compared}): ours {h.get('ours')} | theirs {h.get('theirs')}")
    differs = h.get("ours") != h.get("theirs")

    if compared == "before":
        pair, label = (b.get("stateBefore"), b.get("theirsBefore")), "state before the move"
    else:
        pair, label = (b.get("oursAfter"), b.get("theirsAfter")), f"state {compared}"
    if pair[0] is None or pair[1] is None:
        out.append(f"{label}: not available on both sides (ours {'yes' if pair[0] is not None else 'no'}, "
                   f"theirs {'yes' if pair[1] is not None else 'no'})")
    else:
        lines, skipped = diff_states(pair[0], pair[1])
        out.append(f"{label}: " + ("differs" if lines else "no differences"))
        out += ["  " + line for line in lines]
        if skipped:
            out.append("  not compared (written by one side only): " + ", ".join(skipped))
        differs = differs or bool(lines)

    fp = b.get("fingerprint") or {}
    if fp.get("ours") is not None and fp.get("theirs") is not None:
        lines = diff_fingerprints(fp["ours"], fp["theirs"])
        out.append(f"fingerprint ({compared}): " + ("differs" if lines else "same"))
        out += lines
        differs = differs or bool(lines)
    else:
        out.append(f"fingerprint ({compared}): not available on both sides")

    ld = b.get("legalDiff")
    if ld:
        out.append(f"legal moves: count expected {ld.get('countExpected')} got {ld.get('countGot')}")
        for name in ("missing", "extra"):
            moves = ld.get(name) or []
            side = "recorded, not ours" if name == "missing" else "ours, not recorded"
            out.append(f"  {name} ({side}): {len(moves)}")
            out += [f"    {_v(m)}" for m in moves]
            differs = differs or bool(moves)
        differs = differs or ld.get("countExpected") != ld.get("countGot")
    return out, differs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ringrift-diff-bundle",
                                     description="Show what differs in a parity state bundle.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="bundle written by ringrift-parity --bundle-dir")
    args = parser.parse_args(argv)
    status = 0
    for i, path in enumerate(args.files):
        try:
            bundle = read_bundle(path)
        except (OSError, ValueError) as exc:
            print(f"ringrift-diff-bundle: {path}: {exc}", file=sys.stderr)
            status = 2
            continue
        lines, differs = describe_bundle(bundle)
        if i:
            print()
        print("\n".join(lines))
        if differs and status == 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

"""ioltrace.btf on BTF blobs built here: offsets through anonymous unions and
structs, bitfields with and without kind_flag, typedefs, and errors."""

import struct

import pytest

from ioltrace import btf


def _strings(*names):
    table, offs = b"\0", {}
    for n in names:
        offs[n] = len(table)
        table += n.encode() + b"\0"
    return table, offs


def _members(*rows):
    return b"".join(struct.pack("<III", *r) for r in rows)


@pytest.fixture
def blob():
    """Types modelled on struct request / struct bio of a 6.x kernel:

        1 int u32           2 long long unsigned int (8)
        3 typedef blk_opf_t -> 1      4 ptr -> 5
        5 struct bio { u32 flags:4 (kind_flag bitfield); u32 prio:12; anon union {ptr a; struct{u64 b; ptr bi_blkg}}; }
        6 anon union, 7 anon struct
        8 struct request { ptr q; blk_opf_t cmd_flags @ 24; u64 __sector @ 48; struct bio embedded @ 64 }
        9 struct old (no kind_flag): u32 x:3 encoded in the INT, member y at bit 32
    """
    s, o = _strings("int", "u64", "blk_opf_t", "bio", "flags", "prio", "a", "b", "bi_blkg", "request", "q",
                    "cmd_flags", "__sector", "embedded", "old", "x", "y")
    types = [
        (btf.INT, o["int"], 0, 0, 4, struct.pack("<I", 32)),
        (btf.INT, o["u64"], 0, 0, 8, struct.pack("<I", 64)),
        (btf.TYPEDEF, o["blk_opf_t"], 0, 0, 1, b""),
        (btf.PTR, 0, 0, 0, 5, b""),
        (btf.STRUCT, o["bio"], 3, 1, 24, _members((o["flags"], 1, (4 << 24) | 0), (o["prio"], 1, (12 << 24) | 4),
                                                   (0, 6, 64))),
        (btf.UNION, 0, 2, 0, 16, _members((o["a"], 4, 0), (0, 7, 0))),
        (btf.STRUCT, 0, 2, 0, 16, _members((o["b"], 2, 0), (o["bi_blkg"], 4, 64))),
        (btf.STRUCT, o["request"], 4, 0, 88, _members((o["q"], 4, 0), (o["cmd_flags"], 3, 24 * 8),
                                                      (o["__sector"], 2, 48 * 8), (o["embedded"], 5, 64 * 8))),
        (btf.STRUCT, o["old"], 2, 0, 8, _members((o["x"], 1, 0), (o["y"], 1, 32))),
    ]
    return btf.encode(types, s)


def test_offsets_through_anonymous_members_and_embedded_structs(blob):
    b = btf.Btf(blob)
    assert b.offset("request", "q") == 0
    assert b.offset("request", "cmd_flags") == 24
    assert b.offset("request", "__sector") == 48
    assert b.offset("bio", "a") == 8
    assert b.offset("bio", "b") == 8
    assert b.offset("bio", "bi_blkg") == 16          # anon union @8 -> anon struct -> +8
    assert b.offset("request", "embedded.bi_blkg") == 64 + 16


def test_types_resolve_through_typedefs(blob):
    b = btf.Btf(blob)
    _, t, _ = b.member("request", "cmd_flags")
    assert (t.kind, b.size_of(t)) == (btf.INT, 4)
    _, t, _ = b.member("request", "q")
    assert (t.kind, b.size_of(t)) == (btf.PTR, 8)


def test_bitfields_are_refused_with_kind_flag(blob):
    b = btf.Btf(blob)
    with pytest.raises(btf.BtfError, match="bitfield"):
        b.offset("bio", "flags")
    with pytest.raises(btf.BtfError, match=r"bit 4, 12 bits"):
        b.offset("bio", "prio")


def test_members_without_kind_flag_use_plain_bit_offsets(blob):
    b = btf.Btf(blob)
    assert b.offset("old", "y") == 4
    assert b.offset("old", "x") == 0


@pytest.mark.parametrize("struct_name, path, msg", [
    ("nosuch", "q", "no struct nosuch"),
    ("request", "nosuch", "request has no member nosuch"),
    ("request", "q.x", "not an embedded struct"),
    ("request", "embedded.nosuch", "has no member embedded.nosuch"),
])
def test_missing_things_are_named(blob, struct_name, path, msg):
    with pytest.raises(btf.BtfError, match=msg):
        btf.Btf(blob).offset(struct_name, path)


def test_bad_blobs_are_one_line_errors(tmp_path):
    with pytest.raises(btf.BtfError, match="bad magic"):
        btf.Btf(b"\0" * 32)
    with pytest.raises(btf.BtfError, match="shorter"):
        btf.Btf(b"\x9f\xeb")
    with pytest.raises(btf.BtfError, match="cannot read"):
        btf.Btf.load(str(tmp_path / "absent"))
    good = btf.encode([(btf.INT, 0, 0, 0, 4, struct.pack("<I", 32))])
    with pytest.raises(btf.BtfError, match="past the end"):
        btf.Btf(good[:-3])

"""probepath.choose on BTF blobs built here: raw when every offset resolves,
classic with the reason otherwise; blkio_hierarchy on fake /proc/cgroups."""

import struct

import pytest

from ioltrace import btf, probepath
from ioltrace.errors import KernelUnsupported

# struct -> [(member, byte offset, kind)], kind "ptr", "u32", "u64" or a struct name (embedded)
KERNEL = {
    "request": [("q", 0, "ptr"), ("cmd_flags", 24, "u32"), ("rq_flags", 28, "u32"), ("__data_len", 44, "u32"),
                ("__sector", 48, "u64"),
                ("bio", 56, "ptr")],
    "request_queue": [("disk", 104, "ptr")],
    "gendisk": [("major", 0, "u32"), ("first_minor", 4, "u32")],
    "bio": [("bi_opf", 16, "u32"), ("bi_blkg", 72, "ptr")],
    "blkcg_gq": [("blkcg", 40, "ptr")],
    "cgroup_subsys_state": [("cgroup", 0, "ptr")],
    "blkcg": [("css", 0, "cgroup_subsys_state")],
    "cgroup": [("level", 216, "u32"), ("kn", 256, "ptr")],
    "kernfs_node": [("id", 96, "u64")],
}
# enum req_flag_bits of 6.1 and 6.18 (a 4.x kernel had __REQ_FUA at 13).
REQ_FLAG_BITS = {"__REQ_SYNC": 11, "__REQ_META": 12, "__REQ_FUA": 17, "__REQ_PREFLUSH": 18, "__REQ_RAHEAD": 19}


def build(spec, enumerators=REQ_FLAG_BITS):
    """A BTF blob with these structs (type ids: 1 u32, 2 u64, 3 void *, then
    structs in order) and one enum req_flag_bits of these enumerators."""
    strings, offs = b"\0", {}

    def name(n):
        nonlocal strings
        if n not in offs:
            offs[n] = len(strings)
            strings += n.encode() + b"\0"
        return offs[n]

    ids = {"u32": 1, "u64": 2, "ptr": 3}
    for i, s in enumerate(spec):
        ids[s] = 4 + i
    types = [(btf.INT, name("unsigned int"), 0, 0, 4, struct.pack("<I", 32)),
             (btf.INT, name("long long unsigned int"), 0, 0, 8, struct.pack("<I", 64)),
             (btf.PTR, 0, 0, 0, 0, b"")]
    for s, members in spec.items():
        body = b"".join(struct.pack("<III", name(m), ids[k], off * 8) for m, off, k in members)
        types.append((btf.STRUCT, name(s), len(members), 0, 512, body))
    body = b"".join(struct.pack("<Ii", name(e), v) for e, v in enumerators.items())
    types.append((btf.ENUM, name("req_flag_bits"), len(enumerators), 0, 4, body))
    return btf.encode(types, strings)


def write(tmp_path, spec, enumerators=REQ_FLAG_BITS):
    p = tmp_path / "vmlinux"
    p.write_bytes(build(spec, enumerators))
    return str(p)


def test_every_offset_found_chooses_raw(tmp_path):
    path = probepath.choose("auto", write(tmp_path, KERNEL))
    assert path.kind == "raw"
    assert path.offsets["IOLT_OFF_BIO_BLKG"] == 72
    assert path.offsets["IOLT_OFF_BLKCG_CGROUP"] == 0
    assert path.offsets["IOLT_OFF_CGROUP_KN"] == 256
    assert path.offsets["IOLT_OFF_KN_ID"] == 96
    assert set(path.offsets) == set(probepath.OFFSETS) | set(probepath.ENUMERATORS)
    assert "-DIOLT_OFF_RQ_DATA_LEN=44" in path.cflags()
    assert "-DIOLT_REQ_FUA_BIT=17" in path.cflags() and "-DIOLT_REQ_PREFLUSH_BIT=18" in path.cflags()
    assert "raw" in path.describe() and "cgroup.kn=256" in path.describe()


@pytest.mark.parametrize("struct_name, member, why", [
    ("cgroup", "kn", "struct cgroup has no member kn"),
    ("request_queue", "disk", "struct request_queue has no member disk"),
])
def test_a_missing_member_falls_back_to_classic_and_says_which(tmp_path, struct_name, member, why):
    spec = {s: [m for m in ms if not (s == struct_name and m[0] == member)] for s, ms in KERNEL.items()}
    path = probepath.choose("auto", write(tmp_path, spec))
    assert path.kind == "classic" and why in path.why
    assert path.describe().startswith("probe path: classic tracepoints (typed path unavailable:")
    with pytest.raises(KernelUnsupported, match="--probes classic"):
        probepath.choose("raw", write(tmp_path, spec))


def test_flag_bits_follow_the_kernel_and_a_missing_one_falls_back(tmp_path):
    old = dict(REQ_FLAG_BITS, __REQ_FUA=13, __REQ_PREFLUSH=14)   # a 4.x numbering
    path = probepath.choose("auto", write(tmp_path, KERNEL, old))
    assert "-DIOLT_REQ_FUA_BIT=13" in path.cflags() and "__REQ_PREFLUSH=14" in path.describe()
    gone = {k: v for k, v in REQ_FLAG_BITS.items() if k != "__REQ_FUA"}
    path = probepath.choose("auto", write(tmp_path, KERNEL, gone))
    assert path.kind == "classic" and "no enumerator __REQ_FUA" in path.why


def test_a_member_of_another_size_falls_back(tmp_path):
    spec = dict(KERNEL, kernfs_node=[("id", 96, "u32")])   # before 5.5: 32-bit ino
    path = probepath.choose("auto", write(tmp_path, spec))
    assert path.kind == "classic" and "kernfs_node.id is 4 bytes" in path.why


def test_no_btf_file_falls_back(tmp_path):
    path = probepath.choose("auto", str(tmp_path / "absent"))
    assert path.kind == "classic" and "cannot read" in path.why


def test_the_environment_variable_points_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv(probepath.BTF_ENV, str(tmp_path / "absent"))
    assert probepath.choose("auto").kind == "classic"


def test_classic_forced_reads_nothing(tmp_path):
    assert probepath.choose("classic", str(tmp_path / "absent")) == probepath.ProbePath("classic", {}, "--probes classic")


@pytest.mark.parametrize("text, want", [
    ("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t1\t1\nblkio\t7\t19\t1\n", 7),   # hybrid
    ("#subsys_name\thierarchy\tnum_cgroups\tenabled\nblkio\t0\t40\t1\nio\t0\t40\t1\n", 0),     # v2
    ("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t1\t1\n", 0),                       # no blkio
])
def test_blkio_hierarchy(tmp_path, text, want):
    p = tmp_path / "cgroups"
    p.write_text(text)
    assert probepath.blkio_hierarchy(str(p)) == want
    path = probepath.ProbePath("raw", {"IOLT_OFF_KN_ID": 96}, "x", want)
    assert ("-DIOLT_BLKCG_V1" in path.cflags()) == bool(want)


def test_cgroup_v1_rows_are_named_by_the_charged_group_after_the_process_is_gone(tmp_path):
    """--by cgroup-v1: a key with the charged blkio group's id (its directory's
    inode under the blkio mount) is named by that group, not by the
    (exited) process; without one, the process decides, as before."""
    from ioltrace import group
    from ioltrace.records import Key
    from ioltrace.resolve import Resolver

    blkio = tmp_path / "blkio"
    (blkio / "demo" / "w1000").mkdir(parents=True)
    (tmp_path / "proc").mkdir()
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"35 25 0:30 / {blkio} rw,nosuid - cgroup cgroup rw,blkio\n")
    r = Resolver(sys_root=str(tmp_path), proc_root=str(tmp_path / "proc"), mountinfo=str(mountinfo))
    ino = (blkio / "demo" / "w1000").stat().st_ino
    gone = 4_000_000   # no such pid in the fake /proc
    assert group.group_id(Key(0, gone, 0, 0, 0, ino), "dd", "cgroup-v1", r).key == "/demo/w1000"
    assert group.group_id(Key(0, gone, 0, 0, 0, blkio.stat().st_ino), "dd", "cgroup-v1", r).key == "/"
    assert group.group_id(Key(0, gone, 0, 0, 0), "dd", "cgroup-v1", r).key == "?"


def test_request_fields_within_a_window_are_read_at_once(tmp_path, monkeypatch):
    """q .. bio lie in 0..64 on 6.18: one read of that window; spread wider,
    or with the A/B switch off, a read per field."""
    monkeypatch.delenv(probepath.WINDOW_ENV, raising=False)
    path = probepath.choose("auto", write(tmp_path, KERNEL))
    assert probepath.rq_window(path.offsets) == (0, 64)
    assert {"-DIOLT_RQ_WIN_BASE=0", "-DIOLT_RQ_WIN_SIZE=64"} <= set(path.cflags())
    spread = dict(path.offsets, IOLT_OFF_RQ_BIO=200)
    assert probepath.rq_window(spread) is None
    assert not any("WIN" in f for f in path._replace(offsets=spread).cflags())
    assert probepath.rq_window({n: off + 12 for n, off in path.offsets.items()}) is None   # 8..76
    assert probepath.rq_window({n: off + 8 for n, off in path.offsets.items()}) == (8, 64)
    monkeypatch.setenv(probepath.WINDOW_ENV, "0")
    assert not any("WIN" in f for f in path.cflags())


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Offsets are cached per BTF blob (probepath.cached_offsets): here in a
    directory of the test's own, never the user's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("IOLTRACE_CACHE", str(cache))
    return cache


def test_offsets_come_from_the_cache_on_the_second_start(tmp_path, private_cache, monkeypatch):
    path = write(tmp_path, KERNEL)
    first = probepath.find_offsets(path)
    assert list((private_cache / "btf").glob("*.json"))

    def no_parse(data):
        raise AssertionError("BTF parsed again although the cache holds its offsets")

    monkeypatch.setattr(probepath.btf, "Btf", no_parse)
    assert probepath.find_offsets(path) == first


def test_a_different_blob_or_lookup_table_is_not_served_from_the_cache(tmp_path, private_cache, monkeypatch):
    path = write(tmp_path, KERNEL)
    found, problems = probepath.find_offsets(path)
    assert found["IOLT_OFF_CGROUP_KN"] == 256 and not problems
    moved = {**KERNEL, "cgroup": [("level", 216, "u32"), ("kn", 248, "ptr")]}
    assert probepath.find_offsets(write(tmp_path, moved))[0]["IOLT_OFF_CGROUP_KN"] == 248
    monkeypatch.setitem(probepath.OFFSETS, "IOLT_OFF_EXTRA", ("request", "nosuchfield", 4))
    found, problems = probepath.find_offsets(path)
    assert any("nosuchfield" in p for p in problems)


def test_a_damaged_or_unwritable_cache_is_passed_by(tmp_path, private_cache):
    path = write(tmp_path, KERNEL)
    want = probepath.find_offsets(path)
    for f in (private_cache / "btf").glob("*.json"):
        f.write_text('{"offsets": [1, 2')
    assert probepath.find_offsets(path) == want
    for f in (private_cache / "btf").glob("*.json"):
        f.unlink()
    (private_cache / "btf").rmdir()
    (private_cache / "btf").write_text("a file where the directory should be")
    assert probepath.find_offsets(path) == want

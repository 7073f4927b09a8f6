"""A small reader of the kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets.

The typed request path reads `struct request`, `struct bio` and the cgroup
structs with bpf_probe_read_kernel at offsets that must match the running
kernel. bcc here cannot do CO-RE, generic distribution headers give wrong
offsets for a custom kernel, and bpftool's C dump widens 1-byte enums (which
moved bio.bi_blkg from 72 to 80 on one kernel and silently read 0), so the
offsets come from BTF itself, read here in pure Python and passed to the
compiler as validated -D integers. Only what offsets need is decoded: type
kinds, names, struct/union members (bitfields, kind_flag, anonymous members)
and the modifiers between them; and enumerators by name, because flag bit
numbers such as __REQ_FUA in enum req_flag_bits move between kernels. It
never imports bcc and never writes.
"""

import struct

from .errors import IoltraceError

VMLINUX = "/sys/kernel/btf/vmlinux"
MAGIC = 0xEB9F

# BTF_KIND_* (include/uapi/linux/btf.h); the extra bytes after each btf_type.
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BtfError(IoltraceError):
    """The BTF blob is absent, malformed, or lacks a struct or member."""

    def __init__(self, what):
        self.what = what
        super().__init__(f"BTF: {what}")


class Member:
    """One struct/union member: name ("" when anonymous), type id, bit offset, bitfield size (0: none)."""

    __slots__ = ("name", "type", "bit_offset", "bitfield_size")

    def __init__(self, name, type_id, bit_offset, bitfield_size):
        self.name, self.type, self.bit_offset, self.bitfield_size = name, type_id, bit_offset, bitfield_size


class Type:
    __slots__ = ("kind", "name", "size", "ref", "members")

    def __init__(self, kind, name, size=0, ref=0, members=()):
        self.kind, self.name, self.size, self.ref, self.members = kind, name, size, ref, members


def _extra_len(kind, vlen):
    """Bytes following a btf_type of this kind (besides members, read separately)."""
    return {INT: 4, ARRAY: 12, ENUM: 8 * vlen, FUNC_PROTO: 8 * vlen, VAR: 4, DATASEC: 12 * vlen,
            DECL_TAG: 4, ENUM64: 12 * vlen}.get(kind, 0)


class Btf:
    """Parsed types of one BTF blob (type id 0 is void)."""

    def __init__(self, data):
        if len(data) < 24:
            raise BtfError("blob shorter than its header")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != MAGIC:
            raise BtfError(f"bad magic {magic:#x} (big-endian or not BTF)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        types_at, strs_at = hdr_len + type_off, hdr_len + str_off
        if types_at + type_len > len(data) or strs_at + str_len > len(data):
            raise BtfError("sections run past the end of the blob")
        self._strings = bytes(data[strs_at:strs_at + str_len])
        self.types = [Type(0, "")]
        self._by_name = {}
        self._enumerators = {}
        pos, end = types_at, types_at + type_len
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
            pos += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            name = self._str(name_off)
            t = Type(kind, name)
            if kind in (STRUCT, UNION):
                t.size = size_or_type
                members = []
                for i in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", data, pos + 12 * i)
                    if kflag:  # bitfield size in the top 8 bits, bit offset in the low 24
                        members.append(Member(self._str(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24))
                    else:
                        members.append(Member(self._str(m_name), m_type, m_off, 0))
                t.members = members
                pos += 12 * vlen
            else:
                if kind in (INT, ENUM, ENUM64, DATASEC, FLOAT):
                    t.size = size_or_type
                else:
                    t.ref = size_or_type
                if kind == ARRAY:
                    t.ref, _index, nelems = struct.unpack_from("<III", data, pos)
                    t.size = nelems
                elif kind in (ENUM, ENUM64):
                    self._read_enumerators(data, pos, kind, vlen, kflag)
                pos += _extra_len(kind, vlen)
            if kind > ENUM64:
                raise BtfError(f"unknown type kind {kind} at type {len(self.types)}")
            if name and kind in (STRUCT, UNION):
                self._by_name.setdefault((kind, name), len(self.types))
            self.types.append(t)

    def _read_enumerators(self, data, pos, kind, vlen, signed_flag):
        """Record name -> value for each enumerator (kind_flag set: signed)."""
        for i in range(vlen):
            if kind == ENUM:
                e_name, value = struct.unpack_from("<Ii" if signed_flag else "<II", data, pos + 8 * i)
            else:
                e_name, lo, hi = struct.unpack_from("<III", data, pos + 12 * i)
                value = (hi << 32) | lo
                if signed_flag and value >> 63:
                    value -= 1 << 64
            self._enumerators.setdefault(self._str(e_name), value)

    def enumerator(self, name):
        """The value of enumerator `name` (C enumerator names are unique)."""
        try:
            return self._enumerators[name]
        except KeyError:
            raise BtfError(f"no enumerator {name}") from None

    @classmethod
    def load(cls, path=VMLINUX):
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except OSError as e:
            raise BtfError(f"cannot read {path}: {e.strerror}") from None

    def _str(self, off):
        end = self._strings.find(b"\0", off)
        return self._strings[off:end if end >= 0 else None].decode("ascii", "replace")

    def _resolve(self, tid):
        """Skip typedefs and qualifiers."""
        seen = 0
        while self.types[tid].kind in _MODIFIERS and seen < 64:
            tid, seen = self.types[tid].ref, seen + 1
        return tid

    def struct_id(self, name, kind=STRUCT):
        tid = self._by_name.get((kind, name))
        if tid is None:
            raise BtfError(f"no {'struct' if kind == STRUCT else 'union'} {name}")
        return tid

    def _find(self, tid, name, base_bits):
        """(member, absolute bit offset) of `name` in struct/union tid, looking
        through anonymous struct/union members; None if absent."""
        for m in self.types[tid].members:
            if m.name == name:
                return m, base_bits + m.bit_offset
            if not m.name:
                inner = self._resolve(m.type)
                if self.types[inner].kind in (STRUCT, UNION):
                    hit = self._find(inner, name, base_bits + m.bit_offset)
                    if hit:
                        return hit
        return None

    def member(self, struct_name, path):
        """(byte offset, Type of the member, bitfield size) of a dotted member
        path inside `struct struct_name`, e.g. ("blkcg", "css.cgroup"). Every
        step but the last must be an embedded struct or union (not a pointer)."""
        tid = self.struct_id(struct_name)
        bits = 0
        parts = path.split(".")
        for i, part in enumerate(parts):
            hit = self._find(tid, part, bits)
            if hit is None:
                raise BtfError(f"struct {struct_name} has no member {'.'.join(parts[:i + 1])}")
            m, bits = hit
            tid = self._resolve(m.type)
            if i + 1 < len(parts) and self.types[tid].kind not in (STRUCT, UNION):
                raise BtfError(f"{struct_name}.{'.'.join(parts[:i + 1])} is not an embedded struct")
        if m.bitfield_size or bits % 8:
            raise BtfError(f"{struct_name}.{path} is a bitfield (bit {bits}, {m.bitfield_size} bits)")
        return bits // 8, self.types[tid], m.bitfield_size

    def offset(self, struct_name, path):
        return self.member(struct_name, path)[0]

    def size_of(self, t):
        """Byte size of a resolved type (ints, enums, structs, pointers)."""
        if t.kind == PTR:
            return 8
        if t.kind in (INT, ENUM, ENUM64, STRUCT, UNION, FLOAT):
            return t.size
        if t.kind in _MODIFIERS:
            return self.size_of(self.types[self._resolve(t.ref)])
        if t.kind == ARRAY:
            return t.size * self.size_of(self.types[self._resolve(t.ref)])
        raise BtfError(f"no size for type kind {t.kind}")


def encode(types, strings=b"\0"):
    """Build a BTF blob from (kind, name_off, info_vlen, kflag, size_or_type, extra_bytes)
    rows: the inverse of Btf for tests. Returns bytes."""
    body = b""
    for kind, name_off, vlen, kflag, size_or_type, extra in types:
        info = (kflag << 31) | (kind << 24) | vlen
        body += struct.pack("<III", name_off, info, size_or_type) + extra
    hdr = struct.pack("<HBBIIIII", MAGIC, 1, 0, 24, 0, len(body), len(body), len(strings))
    return hdr + body + strings

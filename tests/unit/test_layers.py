"""The layer declarations (layers.py) drive decoding, deltas, folding and the
start-up layout check: map entries built from layout.py's ctypes structs, as
bcc hands them over, with expectations computed by hand."""

import ctypes
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from ioltrace import fold, layers, layout, loader, maps
from ioltrace.errors import CompileFailed
from ioltrace.records import LoopKey, LoopTotals, Snapshot, SysKey

U64 = ctypes.c_uint64


def loop_raw(stats, hists):
    """stats: {(tgid, step): (count, sum, min, max, comm)}; hists: {(tgid, step, bucket): n}."""
    return {"loop_stats": [(layout.LoopKey(t, s), layout.LoopStat(*v)) for (t, s), v in stats.items()],
            "loop_hist": [(layout.LoopHistKey(layout.LoopKey(t, s), b, 0), U64(n)) for (t, s, b), n in hists.items()]}


def test_loop_layer_decodes_and_deltas_like_the_others():
    b1, b2 = layout.bucket_of(1_000), layout.bucket_of(50_000)
    first = maps.decode(1, (layers.LOOP,), loop_raw({(7, 0): (2, 2_000, 900, 1_100, b"srv")}, {(7, 0, b1): 2}),
                        {"loop": [U64(0), U64(1), U64(0)]})
    second = maps.decode(2, (layers.LOOP,),
                         loop_raw({(7, 0): (5, 152_000, 900, 50_000, b"srv"), (8, 8): (1, 10, 10, 10, b"x")},
                                  {(7, 0, b1): 2, (7, 0, b2): 3, (8, 8, 0): 1}),
                         {"loop": [U64(4), U64(1), U64(0)]})
    assert first.loop_totals[LoopKey(7, 0)].comm == "srv"
    assert first.counters == {"loop_dropped": 0, "loop_stats_full": 1, "loop_hist_full": 0}
    d = maps.delta(second, first)
    # Counts and sums subtract; min and max are since the start (gauges).
    assert d.loop_totals[LoopKey(7, 0)] == (3, 150_000, 900, 50_000, "srv")
    assert d.loop_totals[LoopKey(8, 8)] == (1, 10, 10, 10, "x")
    assert int(d.loop_hists[LoopKey(7, 0)][b2]) == 3 and int(d.loop_hists[LoopKey(7, 0)].sum()) == 3
    assert d.counters == {"loop_dropped": 4, "loop_stats_full": 0, "loop_hist_full": 0}
    assert d.totals == {} and d.sys_totals == {}


def test_every_layer_owns_snapshot_fields_and_folding_covers_the_folding_ones():
    owned = [f for layer in layers.ALL for f in layer.fields if f]
    assert len(owned) == len(set(owned))
    assert set(owned) <= set(Snapshot._fields)
    assert set(maps.CELL_FIELDS) == {f for layer in layers.ALL if layer.folds for f in layer.fields if f}
    assert not set(layers.LOOP.fields) & set(maps.CELL_FIELDS)
    for layer in layers.ALL:
        assert "comm" in layer.totals._fields
        # Every stage has its exact sum in totals fields, and a Unit.
        assert set(layer.stage_sums) == set(layer.stages)
        assert all(f in layer.totals._fields for fs in layer.stage_sums.values() for f in fs)
        assert set(layer.optional) <= set(layer.stages) and set(layer.units or {}) <= set(layer.stages)
        assert set(layer.key._fields) >= {"tgid"}
        assert all(m.full in layer.counters for m in layer.maps if m.full)


class _Map:
    """A kernel map as fold.take uses one: ctypes keys (unhashable, so
    stored by their bytes), lookup and delete."""

    def __init__(self, pairs):
        self.d = {bytes(k): (k, v) for k, v in pairs}

    def __getitem__(self, k):
        return self.d[bytes(k)][1]

    def __delitem__(self, k):
        del self.d[bytes(k)]

    def items(self):
        return list(self.d.values())


def test_fold_take_deletes_only_the_given_processes():
    def sk(tgid):
        return layout.ScKey(5, tgid, 0, 1, 0)

    tables = {"sc_stats": _Map([(sk(1), layout.ScStat(2, 20, 0, 200, b"a")), (sk(2), layout.ScStat(3, 30, 1, 300, b"b"))]),
              "sc_hist": _Map([(layout.ScHistKey(sk(1), 40, 0), 2), (layout.ScHistKey(sk(2), 41, 0), 3)]),
              "sc_errs": _Map([(layout.ScErrKey(sk(2), -5, 0), 1)])}
    raw = {name: t.items() for name, t in tables.items()}
    part = fold.take(tables, raw, {2}, (layers.SYSCALL,))
    assert [k.tgid for k, _ in tables["sc_stats"].items()] == [1]
    assert [k.k.tgid for k, _ in tables["sc_hist"].items()] == [1]
    assert tables["sc_errs"].items() == []
    assert part.sys_totals == {SysKey(5, 2, 0, 1): (3, 30, 1, 300, "b")}
    assert int(part.sys_hists[SysKey(5, 2, 0, 1)][41]) == 3
    assert part.sys_errors == {(SysKey(5, 2, 0, 1), 5): 1}


class _Table:
    def __init__(self, key, leaf, ttype=None, max_entries=None):
        self.Key, self.Leaf = key, leaf
        if ttype is not None:
            self.ttype = ttype
        if max_entries is not None:
            self.max_entries = max_entries


PROGRAMS = [(layer, source) for layer in layers.ALL
            for source in (layer.source,) + tuple(p.source for p in layer.probe_sets)]


@pytest.mark.parametrize("layer,source", PROGRAMS, ids=lambda x: getattr(x, "name", x))
def test_check_layout_checks_every_map(layer, source):
    good = {m.name: _Table(m.key, m.value) for m in layer.maps_of(source)}
    loader.check_layout(good, layer, source)
    for m in layer.maps_of(source):
        bad = dict(good, **{m.name: _Table(m.key, ctypes.c_char * (ctypes.sizeof(m.value) + 8))})
        with pytest.raises(CompileFailed, match=f"map {m.name} value"):
            loader.check_layout(bad, layer, source)


HASH, ARRAY = 1, 2   # bpf_map_type numbers


@pytest.mark.parametrize("layer,source", PROGRAMS, ids=lambda x: getattr(x, "name", x))
def test_every_map_that_can_fill_has_a_counter(layer, source):
    """A hash map refuses inserts once full; each one of the C programs
    names the counter of its refusals in layers.py, and check_layout
    refuses a hash map without one."""
    src = (Path(loader.bpf_dir()) / source).read_text()
    for m in layer.maps_of(source):
        decl = re.search(rf"^BPF_(?:F_TABLE\(\"(\w+)\"|(HASH)\(|ARRAY\().*\b{m.name}\b", src, re.M)
        kind = (decl.group(1) or decl.group(2) or "array").lower()
        assert (m.full is not None) == (kind == "hash"), (m.name, kind)
        assert m.full is None or m.full in layer.counters
    tables = {m.name: _Table(m.key, m.value, HASH if m.full else ARRAY) for m in layer.maps_of(source)}
    loader.check_layout(tables, layer, source)
    stats = layer.map(layer.stats)
    unnamed = dataclasses.replace(layer, maps=tuple(layers.Map(m.name, m.key, m.value) if m is stats else m
                                                    for m in layer.maps))
    with pytest.raises(CompileFailed, match=f"map {stats.name} is a hash map"):
        loader.check_layout(tables, unnamed, source)


@pytest.mark.parametrize("layer", layers.ALL, ids=lambda x: x.name)
def test_check_layout_counts_the_counter_slots(layer):
    tables = {m.name: _Table(m.key, m.value) for m in layer.maps}
    tables[layer.counters_map] = _Table(ctypes.c_uint32, ctypes.c_uint64, ARRAY, len(layer.counters) - 1)
    with pytest.raises(CompileFailed, match=f"map {layer.counters_map} has {len(layer.counters) - 1} counters"):
        loader.check_layout(tables, layer)


def test_the_raw_probe_set_checks_its_own_in_flight_slots():
    """The typed path's slots (iolt_rqp) differ from the classic ones: each
    program's maps are checked against its own declaration."""
    raw = layers.BLOCK.probe_set("raw").source
    assert layers.BLOCK.maps_of(raw) != layers.BLOCK.maps
    classic = {m.name: _Table(m.key, m.value) for m in layers.BLOCK.maps}
    with pytest.raises(CompileFailed, match="map inflight value"):
        loader.check_layout(classic, layers.BLOCK, raw)


def test_loop_view_names_steps_and_shows_full_maps():
    from ioltrace.views import loop as view

    class Names:
        def comm(self, tgid, comm):
            return comm

    d = np.zeros(layout.NBUCKETS, dtype=np.uint64)
    d[layout.bucket_of(2_000)] = 4
    snap = Snapshot(0, {}, {}, {}, {"loop_hist_full": 2, "loop_dropped": 0},
                    loop_totals={LoopKey(9, 0): LoopTotals(4, 8_000, 2_000, 2_000, "srv"),
                                 LoopKey(9, layout.LOOP_WHOLE_STEP): LoopTotals(4, 8_000, 2_000, 2_000, "srv")},
                    loop_hists={LoopKey(9, 0): d, LoopKey(9, layout.LOOP_WHOLE_STEP): d})
    lines = view.interval_lines(snap, ["a:x", "b:y", "c:z"], Names(), layers.LOOP.alarms)
    assert "PID 9 (srv)  a:x -> b:y" in lines
    assert "PID 9 (srv)  whole chain a:x -> c:z" in lines
    assert lines[-1] == "kernel counters: loop_hist_full=2"

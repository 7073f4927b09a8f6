"""Memory under process churn: what a fold lets go of (the resolver's names,
the cells' arrays) and when the heap is trimmed. No root, no bcc."""

import numpy as np

from ioltrace import fold, layers, layout, maps, memory
from ioltrace.layout import HistKey, StatKey
from ioltrace.resolve import Resolver

from .test_fold import FakeKernel


def test_trimmer_trims_after_enough_folds_and_once_more():
    calls = []
    t = memory.Trimmer(after=10, trim=lambda: calls.append(1))
    assert not t.maybe_trim()
    t.folded(set(range(9)))
    assert not t.maybe_trim() and calls == []
    t.folded({9})
    assert t.maybe_trim() and len(calls) == 1
    # The snapshot read at the fold still held their cells: one more trim.
    assert t.maybe_trim() and len(calls) == 2
    assert not t.maybe_trim() and len(calls) == 2


def test_trim_runs_on_this_c_library():
    assert memory.trim() in (True, False)


def test_folded_processes_are_forgotten_by_the_resolver(tmp_path):
    proc = tmp_path / "proc"
    for pid, comm in ((7, "short"), (8, "stays")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
    r = Resolver(sys_root=str(tmp_path / "sys"), proc_root=str(proc))
    assert r.comm(7) == "short" and r.comm(8) == "stays"
    (proc / "7" / "comm").unlink()
    (proc / "7").rmdir()
    assert r.comm(7) == "short"     # remembered after exit, until folded

    kernel = FakeKernel()
    kernel.io(7, 1, 2, 4096, 10)
    kernel.io(8, 1, 2, 4096, 10)
    folder = fold.Folder(0.0, alive=lambda t: t == 8, clock=lambda: 0.0, on_fold=(r.forget,))
    snap = folder.apply(kernel.snapshot(0), kernel.take)
    assert {k.tgid for k in snap.totals} == {8, layout.EXITED_TGID}
    assert r.comm(7, "gone") == "gone" and r.comm(8) == "stays"


def _raw(cells):
    """(HistKey, count) pairs of stats keys with tgid t, bucket b, stage s."""
    out = []
    for t, s, b, n in cells:
        k = HistKey()
        k.k = StatKey(cgid=1, tgid=t, tid=0, dev=2, op=1)
        k.stage, k.bucket = s, b
        out.append((k, n))
    return out


def test_histogram_cells_are_rows_of_one_array_and_folds_copy_them():
    raw = {"hist": _raw([(7, 1, 10, 2), (7, 1, 11, 3), (8, 1, 10, 1), (8, 0, 5, 4)]), "stats": [], "errs": []}
    hists = maps.decode(0, (layers.BLOCK,), raw, {}).hists
    assert len(hists) == 3
    assert all(a.base is not None for a in hists.values()) and len({id(a.base) for a in hists.values()}) == 1
    by = {(k.tgid, s): a for (k, s), a in hists.items()}
    assert by[(7, 1)][10] == 2 and by[(7, 1)][11] == 3 and by[(7, 1)].sum() == 5
    assert by[(8, 1)].sum() == 1 and by[(8, 0)][5] == 4
    # A folded cell is its own array: it keeps no snapshot's array alive.
    folded = maps.fold_into({}, {c: a for c, a in hists.items() if c[0].tgid == 7})
    (arr,) = folded.values()
    assert not any(np.shares_memory(arr, a) for a in hists.values())
    assert arr.sum() == 5


def test_delta_of_changed_cells_is_exact():
    prev = maps.decode(0, (layers.BLOCK,), {"hist": _raw([(7, 1, 10, 2), (8, 1, 3, 1)])}, {})
    cur = maps.decode(1, (layers.BLOCK,), {"hist": _raw([(7, 1, 10, 5), (8, 1, 3, 1), (9, 1, 4, 6)])}, {})
    d = maps.delta(cur, prev)
    got = {(k.tgid, int(b)): int(a[b]) for (k, _), a in d.hists.items() for b in np.nonzero(a)[0]}
    assert got == {(7, 10): 3, (9, 4): 6}

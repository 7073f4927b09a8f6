"""Snapshots -> Prometheus exposition text (format 0.0.4) or OpenMetrics 1.0.0.

Pure: takes cumulative Snapshots (maps.snapshot; the block layer, the
syscall layer or both, each with its own families) and a resolver for
names, returns bytes. No bcc, no sockets, no files; serve.py does the HTTP
and the textfile. Values are cumulative since the tracer started (Prometheus
counters), so they come from Snapshots directly, never from deltas.

Two promises hold across scrapes of one Exporter, because Prometheus relies
on them:

- every exported counter, bucket and sum only grows: a label set is the sum
  of a set of kernel keys that only gains members, keys that leave the
  kernel maps keep their last counts here, and the series a label set is
  folded into (``other``) never gives members back;
- histogram buckets are exact sums of kernel counts: every exported edge is
  a fine-bucket boundary of layout.py, so nothing is interpolated.

Over 400 lines for one reason: the memory kept between scrapes (Level,
_Acc) and the rendering that reads it are the two halves of the first
promise, and are checked together (tests/unit/test_prometheus.py). Which
layers, levels and labels exist comes from layers.py.
"""

import math

import numpy as np

from .. import cgnames, layout, maps
from .. import layers as layer_decls
from ..fmt import errno_name, spell

TEXT = "text"
OPENMETRICS = "openmetrics"
CONTENT_TYPES = {
    TEXT: "text/plain; version=0.0.4; charset=utf-8",
    OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}

# Exported bucket edges of latencies (layers.LATENCY): powers of two of
# nanoseconds, 2^10 ns (1.024 us) to 2^36 ns (68.7 s); 27 edges, then +Inf.
# Decimal edges (1 us, 5 ms) are not fine-bucket boundaries above 128 ns,
# powers of two of ns always are, and 2^36 ns is where the kernel's overflow
# bucket starts. Stages of other units (request size, depth) have their own
# edges and families (layers.Unit), cut the same way (Scale).


class Scale:
    """How one layers.Unit is exported: the fine-bucket index of each edge,
    the np.add.reduceat segment starts ([0, b0) is below the first edge,
    [b_i, b_i+1) between two, [b_last, NBUCKETS) above the last) and the le
    label of each edge, then +Inf."""

    def __init__(self, unit):
        self.unit = unit
        self.edges = tuple(unit.edges)
        self.buckets = tuple(layout.bucket_of(e) for e in self.edges)
        for e, b in zip(self.edges, self.buckets):
            assert layout.BUCKET_LOW[b] == e, f"edge {e} {unit.name} is not a fine-bucket boundary"
        self.starts = np.array((0,) + self.buckets, dtype=np.intp)
        self.le = tuple(str(e - 1) if unit.whole else repr(e / unit.scale) for e in self.edges) + ("+Inf",)

    def coarse(self, matrix):
        """Rows of fine counts -> rows of per-segment (not cumulative) counts."""
        return np.add.reduceat(matrix, self.starts, axis=1)

    def value(self, total):
        """A sum in the unit as exported (seconds for ns; whole counts as they are)."""
        return total / self.unit.scale if self.unit.scale != 1 else total


SCALES = {u.name: Scale(u) for u in (layer_decls.LATENCY, layer_decls.SIZE, layer_decls.DEPTH)}
_LATENCY = SCALES[layer_decls.LATENCY.name]
EDGES_NS = _LATENCY.edges
EDGE_BUCKETS = _LATENCY.buckets
_SEGMENT_STARTS = _LATENCY.starts
LE_VALUES = _LATENCY.le
# Width of the per-segment rows every stage's counts are kept in: the
# widest unit's; a unit with fewer edges leaves its last columns 0.
NBUCKETS_OUT = max(len(sc.le) for sc in SCALES.values())

DEFAULT_MAX_SERIES = 1000   # label sets per level before folding; range 1..1e9
# serve --by: the first keys it can export, and their labels (the levels of
# layers.py that start with them give the family names).
SERVE_KINDS = ("process", "cgroup", "disk")
_OWNER_LABELS = {"process": ("pid", "comm"), "cgroup": ("cgroup", "workload"), "disk": ("device",)}
_WORDS = {"pid": "process (pid and comm)", "cgroup": "cgroup v2", "device": "disk", "op": "op",
          "syscall": "syscall"}
OTHER = "other"             # the value of every label of a folded label set



def cumulative(counts):
    """Fine bucket counts (layout.NBUCKETS) -> cumulative counts per LE_VALUES.

    Entry i counts the samples below EDGES_NS[i] nanoseconds; the last entry
    (+Inf) counts them all. Latencies are whole nanoseconds, so "below edge"
    is "at most edge - 1 ns": a sample of exactly 2^k ns counts in the next
    bucket up, as the kernel's fine buckets are [low, high).
    """
    return np.cumsum(np.add.reduceat(np.asarray(counts, dtype=np.uint64), _SEGMENT_STARTS), dtype=np.uint64)


def _coarse(matrix, scale=_LATENCY):
    """Rows of fine counts -> rows of per-segment (not cumulative) counts,
    NBUCKETS_OUT wide."""
    out = scale.coarse(matrix)
    if out.shape[1] < NBUCKETS_OUT:
        out = np.pad(out, ((0, 0), (0, NBUCKETS_OUT - out.shape[1])))
    return out


# -- escaping -------------------------------------------------------------------

_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def escape(value):
    """A label value as it goes between the double quotes: valid UTF-8, with
    backslash, double quote and newline escaped (both formats agree)."""
    return spell(str(value)).translate(_LABEL_ESCAPES)


def _labels(names, values):
    # An empty label is the same as no label to Prometheus; "workload" is
    # left out when the cgroup path names no unit, container or pod.
    return ",".join(f'{n}="{escape(v)}"' for n, v in zip(names, values) if v or n != "workload")


# -- content negotiation --------------------------------------------------------

def negotiate(accept):
    """The format to answer an Accept header with: OpenMetrics when the
    scraper asks for application/openmetrics-text at least as much as for
    text/plain (Prometheus does), else the text format."""
    om_q = text_q = 0.0
    for part in (accept or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        mtype = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f[:2].lower() == "q=":
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if not math.isfinite(q):
            q = 0.0
        if mtype == "application/openmetrics-text":
            om_q = max(om_q, q)
        elif mtype in ("text/plain", "text/*", "*/*"):
            text_q = max(text_q, q)
    return OPENMETRICS if om_q > 0 and om_q >= text_q else TEXT


# -- levels of aggregation ------------------------------------------------------

class Level:
    """One aggregation of kernel keys (per disk, per cgroup, per process) and
    what it remembers between scrapes: which label sets have their own
    series, which were folded into "other", and the counts of kernel keys
    that left the maps."""

    def __init__(self, name, prefix, labels, what, retire_dead):
        self.name = name
        self.prefix = prefix            # metric name prefix
        self.labels = labels            # identifying label names
        self.what = what                # for HELP texts
        self.retire_dead = retire_dead  # fold label sets whose keys all left
        self.other = (OTHER,) * len(labels)
        self.kept = {}                  # label set -> True, in order of arrival
        self.folded = set()             # never get a series of their own again
        self.base = {}                  # label set -> _Acc of keys that left the maps
        self._text = {}                 # label set -> its escaped label text
        self.hist_text = {}             # (label set, stage) -> (sum, buckets, text) of the last scrape

    def label_text(self, entity):
        t = self._text.get(entity)
        if t is None:
            t = self._text[entity] = _labels(self.labels, entity)
        return t

    def assign(self, candidates, max_series):
        """Give new label sets a series while there is room; fold the rest.
        candidates: label set -> (bytes, ios) seen this scrape."""
        new = [e for e in candidates if e not in self.kept and e not in self.folded and e != self.other]
        # Biggest first, so the first scrape keeps what matters; then by name
        # so the choice does not depend on map iteration order.
        new.sort(key=lambda e: (-candidates[e][0], -candidates[e][1], e))
        for e in new:
            if len(self.kept) < max_series:
                self.kept[e] = True
            else:
                self.folded.add(e)

    def out(self, entity):
        return entity if entity in self.kept else self.other

    def forget(self, live):
        """Label sets with a series but no kernel key any more: with nothing
        remembered they free their slot; with counts remembered they stay
        (disk, cgroup) or, for processes, are folded into "other" with them."""
        for e in [e for e in self.kept if e not in live]:
            acc = self.base.get(e)
            if acc is None:
                del self.kept[e]
                self._text.pop(e, None)
            elif self.retire_dead:
                del self.kept[e]
                self._text.pop(e, None)
                self.folded.add(e)
                self.base.setdefault(self.other, _Acc()).add(self.base.pop(e))


class _Acc:
    """Counts of one label set that no longer come from the kernel maps."""

    def __init__(self):
        self.ios = self.bytes = 0
        self.sum_ns = {}        # stage number -> ns
        self.errors = {}        # errno -> count
        self.hist = {}          # stage number -> per-segment counts (NBUCKETS_OUT,)

    def add(self, other):
        self.ios += other.ios
        self.bytes += other.bytes
        for s, v in other.sum_ns.items():
            self.sum_ns[s] = self.sum_ns.get(s, 0) + v
        for e, v in other.errors.items():
            self.errors[e] = self.errors.get(e, 0) + v
        for s, v in other.hist.items():
            self.hist[s] = self.hist[s] + v if s in self.hist else v.copy()


# -- layers ----------------------------------------------------------------------

def _pid_label(key):
    return "exited" if key.tgid == layout.EXITED_TGID else str(key.tgid)


class _Layer:
    """One traced layer (a layers.Layer) as exported: its levels, its
    histogram stages, and what its last scrape saw."""

    def __init__(self, decl, levels, stages):
        self.decl = decl
        self.levels = levels
        self.stages = stages                # stage numbers with a histogram family
        units = [decl.unit(decl.stages[s]) for s in stages]
        self.scales = tuple(SCALES[u.name] for u in units)
        # Latencies share one family with a stage label; a stage of another
        # unit is a family of its own.
        self.stage_labels = tuple(decl.stages[s] if decl.stage_label and u is layer_decls.LATENCY else None
                                  for s, u in zip(stages, units))
        self.families = {}                  # family suffix -> positions in stages, in order
        for si, u in enumerate(units):
            self.families.setdefault(u.family, []).append(si)
        self.count = decl.count_field       # family of completions: "ios" or "calls"
        self.helps = decl.helps
        self.sum_fields = {s: decl.stage_sums[decl.stages[s]] for s in stages}
        self.prev = None                    # (totals, errors, [(key, stage)], coarse rows) of the last scrape

    def view(self, snap):
        """(totals by key, hists by (key, stage), errors by (key, errno))."""
        totals_f, hists_f, errors_f = self.decl.fields
        hists = getattr(snap, hists_f)
        if not self.decl.staged:
            hists = {(k, 0): arr for k, arr in hists.items()}
        return getattr(snap, totals_f), hists, getattr(snap, errors_f) if errors_f else {}

    def stage_sum(self, t, stage):
        """The exact ns of one stage of a totals record."""
        return sum(getattr(t, f) for f in self.sum_fields[stage])


def by_level(decl, by):
    """The one level `serve --by` exports for a layer (a layers.Level, or
    None when the layer has no level of that first key): the family names
    of the layer's level for by.kind, labelled by the chosen keys only, so
    cgroup,disk sums the ops of each cgroup and device."""
    owner = _OWNER_LABELS[by.kind]
    base = next((lv for lv in decl.levels if lv.labels[:len(owner)] == owner), None)
    if base is None:
        return None
    op_label = "syscall" if "syscall" in base.labels else "op"
    second = {"disk": ("device",), "op": (op_label,), None: ()}[by.second]
    labels = owner + tuple(x for x in second if x not in owner)
    what = "per " + " and ".join(_WORDS[x] for x in labels if x in _WORDS)
    return layer_decls.Level(base.name, base.prefix, labels, what, base.per_process)


# -- the exporter ---------------------------------------------------------------

class Exporter:
    """Renders Snapshots of one tracer, scrape after scrape.

    resolver: names for devs and cgroup ids (resolve.Resolver or a fake).
    stages: block stage names to export histograms for (the kernel records
    "total" only when built with total_hist).
    info: labels of ioltrace_build_info.
    layers: names of the layers.py declarations the tracer attached.
    by: a bykeys.By (serve --by): only that level (by_level), per_process
    aside; None: the layers' own levels.
    """

    def __init__(self, resolver, per_process=False, max_series=DEFAULT_MAX_SERIES,
                 stages=("queue", "device"), info=None, layers=("block",), by=None):
        self.resolver = resolver
        self.max_series = int(max_series)
        self.per_process = per_process
        self.info = dict(info or {})
        self.layers = []
        for decl in layer_decls.named(layers):
            if not decl.levels:
                continue
            chosen = [by_level(decl, by)] if by is not None else [
                lv for lv in decl.levels if per_process or not lv.per_process]
            levels = [Level(lv.name, lv.prefix, lv.labels, lv.what, lv.per_process) for lv in chosen if lv]
            if not levels:
                continue
            wanted = tuple(decl.stages.index(s) for s in stages if s in decl.stages) if decl.staged else (0,)
            self.layers.append(_Layer(decl, levels, wanted))
        self._templates = {}

    def _entities(self, layer, key, comm):
        """Label sets of one kernel key, one per level; None for the
        kernel's own catch-all key (stats map full), which every level
        shows as "other"."""
        if key.tgid == layout.OTHER_TGID:
            return None
        decl = layer.decl
        memo = {}

        def value(label):
            v = memo.get(label)
            if v is None:
                if label in ("op", "syscall"):
                    v = decl.op_name(key)
                elif label == "device":
                    v = self.resolver.disk_name(key.dev)
                elif label == "cgroup":
                    v = spell(self.resolver.cgroup_path(key.cgid))
                elif label == "workload":
                    v = spell(cgnames.name_of(self.resolver.cgroup_path(key.cgid)))
                elif label == "pid":
                    v = _pid_label(key)
                else:   # comm
                    v = spell(comm)
                memo[label] = v
            return v

        return [tuple(value(label) for label in lvl.labels) for lvl in layer.levels]

    def _remember_gone(self, layer, totals_now, ents_of):
        """Kernel keys of the previous scrape that left the maps (or
        restarted from lower counts): keep their last counts in the base of
        their label sets."""
        totals, errors, cell_keys, coarse = layer.prev
        # A folded key's counts live on in its folded key (same cgroup, disk
        # and op), so keeping them here too would count them twice.
        gone = [k for k, p in totals.items()
                if (p[0] or p.bytes or p.errors) and (k not in totals_now or totals_now[k][0] < p[0])
                and not (k not in totals_now and maps.folded_key(k) in totals_now)]
        if not gone:
            return
        accs = {}
        for k in gone:
            t = totals[k]
            acc = accs[k] = _Acc()
            acc.ios, acc.bytes = t[0], t.bytes
            acc.sum_ns = {s: layer.stage_sum(t, s) for s in layer.stages}
        for row, (k, stage) in enumerate(cell_keys):
            acc = accs.get(k)
            if acc is not None:
                acc.hist[stage] = coarse[row].copy()
        for (k, errno), n in errors.items():
            acc = accs.get(k)
            if acc is not None:
                acc.errors[errno] = acc.errors.get(errno, 0) + n
        for k in gone:
            ents = ents_of(k, totals[k].comm)
            for i, lvl in enumerate(layer.levels):
                e = lvl.other if ents is None else lvl.out(ents[i])
                lvl.base.setdefault(e, _Acc()).add(accs[k])

    def render(self, snap, fmt=TEXT):
        """The whole exposition for one Snapshot, as UTF-8 bytes."""
        om = fmt == OPENMETRICS
        out = []
        self._render_info(out, om)
        for layer in self.layers:
            self._render_layer(out, layer, *layer.view(snap), om)
        self._render_kernel(out, snap, om)
        self._render_folded(out, om)
        if om:
            out.append("# EOF")
        return ("\n".join(out) + "\n").encode("utf-8")

    def _render_layer(self, out, layer, totals, hists, errors, om):
        memo = {}

        def ents_of(k, comm):
            got = memo.get(k)
            if got is None:
                got = memo[k] = self._entities(layer, k, comm) or ()
            return got or None

        if layer.prev is not None:
            self._remember_gone(layer, totals, ents_of)

        # Keys with something to show; the loader seeds the catch-all keys
        # with zeros, and those stay hidden until the kernel uses them.
        live = [(k, t) for k, t in totals.items() if t[0] or t.bytes or t.errors]   # t[0]: the layer's count
        live_ents = [ents_of(k, t.comm) for k, t in live]
        for i, lvl in enumerate(layer.levels):
            seen = {}
            for (k, t), ents in zip(live, live_ents):
                if ents is None:
                    continue
                e = ents[i]
                b, n = seen.get(e, (0, 0))
                seen[e] = (b + t.bytes, n + t[0])
            lvl.forget(seen)
            lvl.assign(seen, self.max_series)

        live_index = {k: j for j, (k, _) in enumerate(live)}
        cells = [(live_index[k], stage, arr) for (k, stage), arr in hists.items()
                 if stage in layer.stages and k in live_index]
        coarse = None
        if cells:
            # Cut by each stage's unit: cells sorted by stage, one reduceat per stage.
            cells.sort(key=lambda c: c[1])
            stage_of = np.fromiter((c[1] for c in cells), dtype=np.intp, count=len(cells))
            fine = np.stack([c[2] for c in cells]).astype(np.uint64, copy=False)
            coarse = np.zeros((len(cells), NBUCKETS_OUT), dtype=np.uint64)
            for stage, scale in zip(layer.stages, layer.scales):
                picked = np.flatnonzero(stage_of == stage)
                if len(picked):
                    coarse[picked] = _coarse(fine[picked], scale)
        # What the next scrape needs to notice keys leaving the maps: the
        # coarse rows, not the Snapshot's fine arrays (8 KiB per cell).
        layer.prev = (totals, errors, [(live[kj][0], st) for kj, st, _ in cells], coarse)
        for i, lvl in enumerate(layer.levels):
            self._render_level(out, layer, lvl, i, errors, live, live_ents, live_index, cells, coarse, om)

    # -- families ---------------------------------------------------------------

    @staticmethod
    def _head(out, family, mtype, help_text, om, unit=None):
        """Metadata lines. A counter family is "x_total" in the text format
        and "x" (samples "x_total") in OpenMetrics."""
        name = family + "_total" if mtype == "counter" and not om else family
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {mtype}")
        if om and unit:
            out.append(f"# UNIT {name} {unit}")

    def _render_info(self, out, om):
        labels = _labels(tuple(self.info), tuple(self.info.values()))
        help_text = "ioltrace version and how it traces (start tracepoint, kernel headers); always 1."
        if om:
            self._head(out, "ioltrace_build", "info", help_text, om)
        else:
            self._head(out, "ioltrace_build_info", "gauge", help_text, om)
        out.append(f"ioltrace_build_info{{{labels}}} 1" if labels else "ioltrace_build_info 1")

    def _render_level(self, out, layer, lvl, i, errors_in, live, live_ents, live_index, cells, coarse, om):
        # Output label sets: kept ones in name order, "other" last.
        index = {}
        key_out = []                       # per live key: output row or -1
        for k_ents in live_ents:
            e = lvl.other if k_ents is None else lvl.out(k_ents[i])
            j = index.get(e)
            if j is None:
                j = index[e] = len(index)
            key_out.append(j)
        for e in lvl.base:
            if e not in index:
                index[e] = len(index)
        n = len(index)
        stages = layer.stages
        stage_sum = layer.stage_sum
        nst = len(stages)
        ios = [0] * n
        nbytes = [0] * n
        sums = [[0] * nst for _ in range(n)]
        errors = {}
        for (k, t), j in zip(live, key_out):
            ios[j] += t[0]
            nbytes[j] += t.bytes
            s = sums[j]
            for si, stage in enumerate(stages):
                s[si] += stage_sum(t, stage)
        for (k, errno), c in errors_in.items():
            j = live_index.get(k)
            if j is not None:
                cell = (key_out[j], errno)
                errors[cell] = errors.get(cell, 0) + c
        hist = np.zeros((n * nst, NBUCKETS_OUT), dtype=np.uint64)
        if cells:
            stage_pos = {s: si for si, s in enumerate(stages)}
            rows = np.fromiter((key_out[kj] * nst + stage_pos[st] for kj, st, _ in cells),
                               dtype=np.intp, count=len(cells))
            # Sum the cells of each output row: sort by row, then one
            # reduceat (np.add.at is several times slower on uint64).
            order = np.argsort(rows, kind="stable")
            rows = rows[order]
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            hist[rows[starts]] = np.add.reduceat(coarse[order], starts, axis=0)
        for e, acc in lvl.base.items():
            j = index[e]
            ios[j] += acc.ios
            nbytes[j] += acc.bytes
            for si, stage in enumerate(stages):
                sums[j][si] += acc.sum_ns.get(stage, 0)
                if stage in acc.hist:
                    hist[j * nst + si] += acc.hist[stage]
            for errno, c in acc.errors.items():
                errors[(j, errno)] = errors.get((j, errno), 0) + c
        hist = np.cumsum(hist, axis=1, dtype=np.uint64)

        order = sorted(index.items(), key=lambda ej: (ej[0] == lvl.other, ej[0]))
        lbl = {j: lvl.label_text(e) for e, j in order}
        p = lvl.prefix
        h_count, h_bytes, h_errors, h_latency = (h.format(what=lvl.what) for h in layer.helps)
        self._head(out, f"{p}_{layer.count}", "counter", h_count, om)
        out.extend(f"{p}_{layer.count}_total{{{lbl[j]}}} {ios[j]}" for _, j in order)
        self._head(out, f"{p}_bytes", "counter", h_bytes, om, "bytes")
        out.extend(f"{p}_bytes_total{{{lbl[j]}}} {nbytes[j]}" for _, j in order)
        self._head(out, f"{p}_errors", "counter", h_errors, om)
        rank = {j: r for r, (_, j) in enumerate(order)}
        for (j, errno), c in sorted(errors.items(), key=lambda x: (rank[x[0][0]], x[0][1])):
            out.append(f'{p}_errors_total{{{lbl[j]},errno="{escape(errno_name(errno))}"}} {c}')
        # Most label sets are idle between two scrapes (exited processes,
        # quiet cgroups): their text is reused when their counts are equal.
        rows = hist.tolist()
        cache, fresh = lvl.hist_text, {}
        for family, positions in layer.families.items():
            unit = layer.scales[positions[0]].unit
            fam = f"{p}_{family}"
            self._head(out, fam, "histogram", unit.help.format(what=lvl.what) if unit.help else h_latency, om,
                       unit.prom_unit)
            templates = [(si, self._hist_template(fam, layer.stage_labels[si], layer.scales[si]))
                         for si in positions]
            for e, j in order:
                for si, tmpl in templates:
                    row, total = rows[j * nst + si], sums[j][si]
                    hit = cache.get((e, si))
                    if hit is not None and hit[0] == total and hit[1] == row:
                        text = hit[2]
                    else:
                        text = tmpl.format(lbl[j], layer.scales[si].value(total), *row)
                    fresh[(e, si)] = (total, row, text)
                    out.append(text)
        lvl.hist_text = fresh

    def _hist_template(self, fam, stage, scale=_LATENCY):
        """One str.format call per histogram writes its buckets, sum and
        count: {0} is the label text, {1} the sum, {2}... the bucket counts
        (a row may be wider than the unit's edges: the rest is unused).
        stage None: a family with one histogram, no stage label."""
        key = (fam, stage)
        t = self._templates.get(key)
        if t is None:
            st = "" if stage is None else f',stage="{stage}"'
            lines = [f'{fam}_bucket{{{{{{0}}{st},le="{le}"}}}} {{{i + 2}}}'
                     for i, le in enumerate(scale.le)]
            lines.append(f'{fam}_sum{{{{{{0}}{st}}}}} {{1!r}}')
            lines.append(f'{fam}_count{{{{{{0}}{st}}}}} {{{len(scale.le) + 1}}}')
            t = self._templates[key] = "\n".join(lines)
        return t

    def _render_kernel(self, out, snap, om):
        self._head(out, "ioltrace_kernel_events", "counter",
                   "Diagnostic counters of the kernel side: requests it could not track or record "
                   "(see docs/RELIABILITY.md).", om)
        names = list(layout.COUNTERS) + sorted(n for n in snap.counters if n not in layout.COUNTERS)
        for name in names:
            out.append(f'ioltrace_kernel_events_total{{event="{escape(name)}"}} {int(snap.counters.get(name, 0))}')

    def _render_folded(self, out, om):
        self._head(out, "ioltrace_folded_label_sets", "gauge",
                   "Label sets counted in the \"other\" series of their level: beyond --max-series, "
                   "or processes whose counts left the kernel maps.", om)
        for layer in self.layers:
            for lvl in layer.levels:
                out.append(f'ioltrace_folded_label_sets{{level="{lvl.name}"}} {len(lvl.folded)}')

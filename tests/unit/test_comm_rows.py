"""A process that changed its name (exec) is one row, not one per name:
the kernel keeps each key's first comm, so READ may say "bash" and WRITE
"dd" for one pid (seen with `bash -c "read ...; exec dd ..."`)."""

from ioltrace import group
from ioltrace.records import Key, Snapshot, Totals


class NoProc:
    """A resolver that never saw the process: names fall back to the kernel's."""

    def __init__(self, live=None):
        self.live = live or {}

    def comm(self, pid, fallback=""):
        return self.live.get(pid, fallback)

    def pid_exists(self, pid):
        return pid in self.live

    def disk_name(self, dev):
        return "loop9"


def snap():
    totals = {Key(0, 4242, 0, 7, 0): Totals(2052, 268_328_960, 0, 0, 0, "bash"),
              Key(0, 4242, 0, 7, 1): Totals(64, 4_194_304, 0, 0, 0, "dd"),
              Key(0, 99, 0, 7, 1): Totals(3, 12288, 0, 0, 0, "other")}
    return Snapshot(0, totals, {}, {}, {})


def test_one_row_per_pid_with_every_kernel_name_when_never_seen():
    rows = group.by_key(snap(), "process", NoProc(), split_disk=False, split_op=False)
    mine = [g for g in rows if g.id.key == "4242"]
    assert len(mine) == 1
    assert mine[0].id.name == "bash|dd"
    assert (mine[0].ios, mine[0].bytes) == (2052 + 64, 268_328_960 + 4_194_304)
    assert sum(g.bytes for g in rows) == 268_328_960 + 4_194_304 + 12288


def test_split_by_op_keeps_one_name_per_pid():
    rows = group.by_key(snap(), "process", NoProc(), split_disk=False)
    assert {g.id.name for g in rows if g.id.key == "4242"} == {"bash|dd"}


def test_the_live_name_wins():
    rows = group.by_key(snap(), "process", NoProc({4242: "dd"}), split_disk=False, split_op=False)
    assert [g.id.name for g in rows if g.id.key == "4242"] == ["dd"]


class SeenBeforeExec(NoProc):
    """The process was seen as bash, then exec'd dd and exited."""

    def comm(self, pid, fallback=""):
        return "bash" if pid == 4242 else fallback

    def pid_exists(self, pid):
        return False


def test_a_gone_process_seen_before_its_exec_shows_every_kernel_name():
    rows = group.by_key(snap(), "process", SeenBeforeExec(), split_disk=False, split_op=False)
    assert [g.id.name for g in rows if g.id.key == "4242"] == ["bash|dd"]

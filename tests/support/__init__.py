"""Helpers shared by the real-kernel tests and the benchmarks: loop devices,
cgroups, fio runs, ioltrace and bpftrace runs, kernel map and RSS sampling
(bench), and the process-churn and soak drivers (churn, soak).

Imported as a package: tests as `from ..support import churn`, benchmark
scripts as `from tests.support import bench` with the repo on sys.path.
Nothing here imports bcc.
"""

"""ioltrace: block I/O latency per process, cgroup and disk, traced with eBPF.

The package is split so that only loader.py touches bcc; everything else is
plain Python that works on records and can be tested without root.
"""

__version__ = "0.1.0"

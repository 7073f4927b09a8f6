"""Errors a user can cause or meet, each building its own one-line message.

cli.main turns any IoltraceError into that line on stderr and exit code 2.
Nothing here prints or exits.
"""


class IoltraceError(Exception):
    """Base: str(err) is the whole line shown to the user."""

    exit_code = 2


class BadInput(IoltraceError):
    def __init__(self, what, why, fix=None):
        self.what, self.why, self.fix = what, why, fix
        msg = f"{what}: {why}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class NotPermitted(IoltraceError):
    def __init__(self, missing=("CAP_BPF", "CAP_PERFMON")):
        self.missing = list(missing)
        super().__init__(
            "not permitted: tracing needs root or the capabilities "
            + " and ".join(self.missing)
            + " (run with sudo)"
        )


class KernelUnsupported(IoltraceError):
    def __init__(self, missing, fix=None):
        self.missing = list(missing)
        msg = "this kernel lacks what ioltrace needs: " + ", ".join(self.missing)
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class BccMissing(IoltraceError):
    def __init__(self, detail=""):
        self.detail = detail
        super().__init__(
            "bcc's Python module is not importable"
            + (f" ({detail})" if detail else "")
            + ": install python3-bpfcc (Debian/Ubuntu) or python3-bcc (Fedora/RHEL)"
            " and use a Python that sees it, e.g. scripts/setup.sh's venv"
        )


class HeadersMissing(IoltraceError):
    def __init__(self, release):
        self.release = release
        super().__init__(
            f"no kernel headers usable for kernel {release}: install "
            f"linux-headers-{release} or the generic linux-headers-amd64 package "
            "(scripts/setup.sh does this)"
        )


class CompileFailed(IoltraceError):
    def __init__(self, detail):
        self.detail = detail
        super().__init__(
            f"bcc could not compile the probes: {detail} "
            "(run 'ioltrace doctor' to see what is missing; -v shows the compiler output)"
        )

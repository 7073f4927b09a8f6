"""`ioltrace doctor`: check this host's requirements (ioltrace/doctor.py)."""

from dataclasses import dataclass

from .. import doctor


@dataclass(frozen=True)
class Options:
    pass


def main(opts: Options) -> int:
    checks = doctor.run_checks()
    line = doctor.privilege_line(checks)
    if line:
        print(line)
    print(doctor.render(checks))
    return 0 if all(c.ok for c in checks if c.name != "BTF") else 2

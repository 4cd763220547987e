"""Errors users see: each says what went wrong and what to do about it."""

from __future__ import annotations


class EtranError(Exception):
    """Base class of every error etran raises on purpose."""


class PrivilegeError(EtranError, PermissionError):
    """An operation needs a privilege (a capability or root) that this process lacks."""

    def __init__(self, operation: str, privilege: str = "CAP_BPF and CAP_NET_ADMIN (run as root)") -> None:
        self.operation = operation
        self.privilege = privilege
        super().__init__(f"{operation} needs {privilege}; run it as root (sudo) or grant the capability")


class VerifierError(EtranError):
    """The kernel's verifier rejected a program; the log says why."""

    def __init__(self, program: str, log: str, errno_: int = 0) -> None:
        self.program = program
        self.log = log
        self.errno = errno_
        tail = "\n".join(log.strip().splitlines()[-30:])
        super().__init__(f"the verifier rejected program {program!r} (errno {errno_}); verifier log (last lines):\n{tail}")


class BuildError(EtranError):
    """clang could not compile an eBPF source."""


class TestbedError(EtranError):
    """A test-bed operation failed (bad name, missing host, ...)."""

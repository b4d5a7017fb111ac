"""The one exception tree of spikeforge.

Every error a user can cause is one of these; each mixes in the stdlib exception a
caller would naturally catch (``ValueError`` for bad values, ``OSError`` for I/O), so
``except ValueError`` keeps working for code that does not know spikeforge.

Messages say what is wrong, where, by how much, and what to do.
"""

from __future__ import annotations

from typing import Self


class SpikeforgeError(Exception):
    """Base of every error raised on purpose by spikeforge."""


# --- hardware specs -------------------------------------------------------------------------
class SpecError(SpikeforgeError, ValueError):
    """A hardware spec file is missing, malformed or incomplete."""


# --- programs and the emulator ---------------------------------------------------------------
class ProgramError(SpikeforgeError, ValueError):
    """A Program is invalid: a register out of range, a port that does not exist, a bad shape."""


class RegisterError(ProgramError):
    """A neuron or projection register value does not fit the target's declared width."""


class ProgramFormatError(ProgramError):
    """A Program file is truncated, corrupted, of another format version or for another target."""


class LearningRuleError(ProgramError):
    """A learning rule the target's learning engine cannot run; ``column`` (1-based) and ``term``
    point at the offending part of the rule string when there is one."""

    def __init__(self, message: str, column: int | None = None, term: str | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.term = term


class EmulatorError(SpikeforgeError, ValueError):
    """Bad emulator input: wrong spike array shape, unknown probe, negative counts."""


# --- compiler -------------------------------------------------------------------------------
class CompileError(SpikeforgeError):
    """A model cannot be compiled."""


class UnsupportedOperator(CompileError, NotImplementedError):
    """A model contains an operator/module the frontend does not lower."""


class DoesNotFit(CompileError, ValueError):
    """A model or population exceeds a limit of the target chip."""


# --- runtime --------------------------------------------------------------------------------
class EventFormatError(SpikeforgeError, ValueError):
    """An event file is malformed or truncated; ``offset`` is the byte offset where decoding stopped."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class ProtocolError(SpikeforgeError, ValueError):
    """Bytes on the wire do not form a valid frame or message."""


class LinkError(SpikeforgeError, OSError):
    """The serial link failed: port missing, closed, unplugged."""


class LinkTimeout(LinkError, TimeoutError):
    """The peer did not answer within the allowed time and retries."""


class LinkClosed(LinkError):
    """The other end of the link closed it, or the device was unplugged."""


# --- optional extras ------------------------------------------------------------------------
class MissingExtra(SpikeforgeError, ImportError):
    """A feature needs a package of an optional extra that is not installed; ``extra`` names the extra.

    Build one with :meth:`needs`, whose message ends with the install command.
    """

    extra: str = ""

    @classmethod
    def needs(cls, feature: str, package: str, extra: str) -> Self:
        """``<feature> needs the package '<package>'; install the optional extra: pip install ...``."""
        err = cls(
            f"{feature} needs the package {package!r}; "
            f'install the optional extra: pip install "spikeforge[{extra}]"'
        )
        err.extra, err.name = extra, package
        return err


class MissingCodec(EventFormatError, MissingExtra):
    """An event file is compressed with a codec whose package (an optional extra) is not installed."""

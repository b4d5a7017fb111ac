"""Sum-of-products learning rules: the language, its check against a target, its integer form.

A rule updates a synaptic variable ``Z`` (``w`` weight, ``d`` delay tag, ``t`` tag) once per learning
epoch, per synapse (DESIGN.md, "On-chip learning"; Davies et al. 2018, Fig. 3)::

    Z ← Z + Σ_m S_m · D_m · Π_n (F_mn + C_mn)        S_m = mantissa_m · 2^exponent_m

Grammar of a rule string (several equations are separated by ``;`` or new lines; blanks ignored)::

    equation := target '=' ['+'|'-'] product {('+'|'-') product}
    target   := 'dw' | 'dd' | 'dt'
    product  := atom {'*' atom}
    atom     := INT                      a factor of the scale's mantissa
              | '2^' ['+'|'-'] INT       a factor 2^e of the scale
              | VAR                      a dependency or a factor
              | '(' VAR ['+'|'-' INT] ')'          a factor with a constant, F + C
              | 'sgn(' VAR ['+'|'-' INT] ')'       the sign of w, d or t (+ C)
    VAR      := x0 | y0 | u0 .. u9       dependencies: pre spike, post spike, every 2^k epochs
              | x1 | x2 | y1 | y2 | y3 | w | d | t

The first dependency of a product gates it; a later ``x0`` / ``y0`` in the same product is a
one-bit factor (as in Lava's ``ProductSeries``). Integer factors of the scale are normalised as
Lava does: while ``|mantissa| > 7`` and it is even, it is halved and the exponent raised.

:func:`parse` gives the AST (:class:`Equation` of :class:`Product` of :class:`Factor`, plain
integers and names), :func:`check` validates it against the spec's ``[learning]`` limits and the
family's learning engine (an error points at the term and its 1-based column),
:func:`compile_rule` gives the engine's integer configuration (:class:`RuleConfig`, one row of
integers per product) and :func:`format_rule` prints any of these back as an equivalent rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spikeforge.errors import LearningRuleError

__all__ = ["Factor", "Product", "Equation", "RuleConfig", "parse", "check", "compile_rule", "decode",
           "format_rule", "TARGETS", "FACTOR_VARS", "DEPENDENCIES", "MAX_TEXT"]

#: synaptic variables a rule may update: dw, dd, dt → w, d, t
TARGETS = ("dw", "dd", "dt")
#: the variables a factor may read (codes are the indices)
FACTOR_VARS = ("x0", "y0", "x1", "x2", "y1", "y2", "y3", "w", "d", "t")
#: dependency codes: pre spike in the epoch, post spike in the epoch, every 2^k epochs
DEPENDENCIES = ("x0", "y0", "u")
#: variables sgn(...) applies to (Lava ProductSeries: synaptic variables only)
SGN_VARS = ("w", "d", "t")
#: longest rule text accepted (a rule from a file is untrusted data)
MAX_TEXT = 4096

_TOKEN = re.compile(r"[ \t\r]*(?:(?P<int>\d+)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)|(?P<op>[-+*^()=;\n]))")


@dataclass(frozen=True)
class Factor:
    """``var + const`` (``sgn(var + const)`` when ``sgn``): one factor of a product."""

    var: str
    const: int = 0
    sgn: bool = False


@dataclass(frozen=True)
class Product:
    """``mantissa · 2^exponent · dependency · Π factors``; ``decimate`` is k of a ``u_k`` dependency.
    ``column`` and ``text`` say where the term was written (not part of its value)."""

    dependency: str
    mantissa: int
    exponent: int
    factors: tuple[Factor, ...]
    decimate: int = 0
    column: int = field(default=0, compare=False)
    text: str = field(default="", compare=False)


@dataclass(frozen=True)
class Equation:
    """One rule: ``target = Σ products`` with ``target`` in :data:`TARGETS`."""

    target: str
    products: tuple[Product, ...]
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class RuleConfig:
    """The learning engine's integer configuration of a rule: one row per product, ``(target,
    dependency, decimate, mantissa, exponent, n_factors, var_1, const_1, sgn_1, ...)`` with codes
    indexing :data:`TARGETS`, :data:`DEPENDENCIES` and :data:`FACTOR_VARS`."""

    rows: tuple[tuple[int, ...], ...]

    def equations(self) -> tuple[Equation, ...]:
        return decode(self.rows)


class _Tokens:
    """The tokens of a rule string: ``(kind, text, column)`` with 1-based columns."""

    def __init__(self, text: str) -> None:
        self.items: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                rest = text[pos:].lstrip(" \t\r")
                if not rest:
                    break
                col = len(text) - len(rest) + 1
                raise LearningRuleError(f"rule {text!r}: unexpected character {rest[0]!r} at column {col}",
                                        column=col, term=rest[0])
            kind = m.lastgroup or "op"
            self.items.append((kind, m.group(kind), m.start(kind) + 1))
            pos = m.end()
        self.items.append(("end", "", len(text) + 1))
        self.i = 0
        self.text = text

    def peek(self) -> tuple[str, str, int]:
        return self.items[self.i]

    def take(self) -> tuple[str, str, int]:
        tok = self.items[self.i]
        self.i += 1
        return tok

    def expect(self, text: str, what: str) -> int:
        kind, got, col = self.take()
        if got != text:
            raise self.error(f"expected {what} at column {col}, found {got or 'the end'!r}", col, got)
        return col

    def error(self, message: str, column: int, term: str) -> LearningRuleError:
        return LearningRuleError(f"rule {self.text!r}: {message}", column=column, term=term)


def parse(text: str) -> tuple[Equation, ...]:
    """The equations of a rule string (see the module docstring), in the order written.

    Raises :class:`LearningRuleError` (with ``column`` and ``term``) for text that is not a rule:
    a syntax error, an unknown variable (named), a product without a dependency, a target given twice.
    """
    if not isinstance(text, str):
        raise LearningRuleError(f"a learning rule is a string such as 'dw = 2^-2*x1*y0'; got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise LearningRuleError(f"rule text of {len(text)} characters is longer than {MAX_TEXT}")
    toks = _Tokens(text)
    equations: list[Equation] = []
    while True:
        while toks.peek()[1] in (";", "\n"):
            toks.take()
        if toks.peek()[0] == "end":
            break
        equations.append(_equation(toks))
        kind, got, col = toks.peek()
        if kind != "end" and got not in (";", "\n"):
            raise toks.error(f"unexpected {got!r} at column {col}", col, got)
    if not equations:
        raise LearningRuleError(f"rule {text!r} has no equation; write e.g. 'dw = 2^-2*x1*y0 - 2^-2*y1*x0'")
    seen: dict[str, int] = {}
    for eq in equations:
        if eq.target in seen:
            raise toks.error(f"{eq.target} is given twice (columns {seen[eq.target]} and {eq.column})",
                             eq.column, eq.target)
        seen[eq.target] = eq.column
    return tuple(equations)


def _equation(toks: _Tokens) -> Equation:
    kind, target, col = toks.take()
    if target not in TARGETS:
        raise toks.error(f"{target or 'the end'!r} at column {col} is not a learning target; "
                         f"write one of {', '.join(TARGETS)}", col, target)
    toks.expect("=", "'='")
    products: list[Product] = []
    sign = 1
    if toks.peek()[1] in ("+", "-"):
        sign = -1 if toks.take()[1] == "-" else 1
    while True:
        products.append(_product(toks, sign))
        if toks.peek()[1] not in ("+", "-"):
            break
        sign = -1 if toks.take()[1] == "-" else 1
    return Equation(target, tuple(products), col)


def _product(toks: _Tokens, sign: int) -> Product:
    start = toks.peek()[2]
    mantissa, exponent = sign, 0
    dependency: str | None = None
    decimate = 0
    factors: list[Factor] = []
    while True:
        kind, tok, col = toks.take()
        if kind == "int" and toks.peek()[1] == "^":
            toks.take()
            if tok != "2":
                raise toks.error(f"scale {tok}^... at column {col}: only powers of 2 are scales (2^e)", col, tok)
            esign = 1
            if toks.peek()[1] in ("+", "-"):
                esign = -1 if toks.take()[1] == "-" else 1
            k2, etok, ecol = toks.take()
            if k2 != "int":
                raise toks.error(f"expected an integer exponent at column {ecol}", ecol, etok)
            exponent += esign * int(etok)
        elif kind == "int":
            mantissa *= int(tok)
        elif kind == "name":
            if tok == "sgn":
                factors.append(_bracket(toks, col, sgn=True))
            else:
                var = _variable(toks, tok, col)
                if var.startswith("u"):
                    if dependency is not None:
                        raise toks.error(f"{tok} at column {col}: a product has one dependency and already "
                                         f"has {dependency if dependency != 'u' else f'u{decimate}'}", col, tok)
                    dependency, decimate = "u", int(var[1:])
                elif var in ("x0", "y0") and dependency is None:
                    dependency = var
                else:
                    factors.append(Factor(var))
        elif tok == "(":
            inner = toks.peek()
            if inner[0] == "int":  # a bracketed scale, e.g. (3)
                toks.take()
                mantissa *= int(inner[1])
                toks.expect(")", "')'")
            else:
                factors.append(_bracket(toks, col, sgn=False, opened=True))
        else:
            raise toks.error(f"expected a factor at column {col}, found {tok or 'the end'!r}", col, tok)
        if toks.peek()[1] != "*":
            break
        toks.take()
    end = toks.peek()[2]
    text = toks.text[start - 1:end - 1].strip()
    if dependency is None:
        raise toks.error(f"term {text!r} at column {start} has no dependency: multiply it by x0 (pre spike), "
                         "y0 (post spike) or u0..u9 (every 2^k epochs)", start, text)
    if mantissa == 0:
        raise toks.error(f"term {text!r} at column {start} has scale 0", start, text)
    while abs(mantissa) > 7 and mantissa % 2 == 0:  # Lava ProductSeries._generate_product
        mantissa //= 2
        exponent += 1
    return Product(dependency, mantissa, exponent, tuple(factors), decimate, start, text)


def _variable(toks: _Tokens, tok: str, col: int) -> str:
    if tok in FACTOR_VARS or re.fullmatch(r"u\d", tok):
        return tok
    raise toks.error(f"unknown variable {tok!r} at column {col}; variables are x0, y0, u0..u9 (dependencies), "
                     "x1, x2 (pre traces), y1, y2, y3 (post traces), w, d, t (synaptic variables)", col, tok)


def _bracket(toks: _Tokens, col: int, *, sgn: bool, opened: bool = False) -> Factor:
    """``(var [± C])`` or ``sgn(var [± C])`` (the ``(`` already taken when ``opened``)."""
    if not opened:
        toks.expect("(", "'(' after sgn")
    kind, tok, vcol = toks.take()
    if kind != "name":
        raise toks.error(f"expected a variable at column {vcol}", vcol, tok)
    var = _variable(toks, tok, vcol)
    if var.startswith("u"):
        raise toks.error(f"{var} at column {vcol} is a dependency, not a factor", vcol, var)
    const = 0
    if toks.peek()[1] in ("+", "-"):
        csign = -1 if toks.take()[1] == "-" else 1
        k2, ctok, ccol = toks.take()
        if k2 != "int":
            raise toks.error(f"expected an integer constant at column {ccol}", ccol, ctok)
        const = csign * int(ctok)
    toks.expect(")", "')'")
    if sgn and var not in SGN_VARS:
        raise toks.error(f"sgn({var}) at column {vcol}: sgn applies to {', '.join(SGN_VARS)} only", vcol, var)
    return Factor(var, const, sgn)


# ------------------------------------------------------------------------------ checks
def check(equations: Sequence[Equation], limits: Mapping[str, Any], text: str = "", where: str = "") -> None:
    """Validate ``equations`` against a learning engine's ``limits`` (``products_per_rule``,
    ``factors_per_product``, ``scale_mantissa``, ``scale_exp``, ``constant``, ``decimate``: ranges as
    ``(lo, hi)``); ``where`` names the spec in messages. Raises :class:`LearningRuleError` pointing
    at the first offending term."""
    def fail(message: str, column: int, term: str) -> LearningRuleError:
        return LearningRuleError(f"rule {text!r}: {message} ({where})" if where else f"rule {text!r}: {message}",
                                 column=column, term=term)

    for eq in equations:
        most = int(limits["products_per_rule"])
        if len(eq.products) > most:
            extra = eq.products[most]
            raise fail(f"{eq.target} has {len(eq.products)} products > products_per_rule {most}; term "
                       f"{extra.text!r} at column {extra.column} is one too many", extra.column, extra.text)
        ks = {p.decimate for p in eq.products if p.dependency == "u"}
        if len(ks) > 1:
            p = next(p for p in eq.products if p.dependency == "u" and p.decimate != min(ks))
            raise fail(f"term {p.text!r} at column {p.column}: one rule has one u_k period; found "
                       f"{', '.join(f'u{k}' for k in sorted(ks))}", p.column, p.text)
        for p in eq.products:
            where_p = f"term {p.text!r} at column {p.column}"
            lo, hi = limits["scale_mantissa"]
            if not lo <= p.mantissa <= hi:
                raise fail(f"{where_p}: scale mantissa {p.mantissa} outside [{lo}, {hi}]; write the scale as "
                           f"m*2^e with m in range", p.column, p.text)
            lo, hi = limits["scale_exp"]
            if not lo <= p.exponent <= hi:
                raise fail(f"{where_p}: scale exponent {p.exponent} outside [{lo}, {hi}]", p.column, p.text)
            most = int(limits["factors_per_product"])
            if len(p.factors) > most:
                raise fail(f"{where_p}: {len(p.factors)} factors > factors_per_product {most}", p.column, p.text)
            lo, hi = limits["decimate"]
            if p.dependency == "u" and not lo <= p.decimate <= hi:
                raise fail(f"{where_p}: u{p.decimate} outside u{lo}..u{hi}", p.column, p.text)
            lo, hi = limits["constant"]
            for f in p.factors:
                if not lo <= f.const <= hi:
                    raise fail(f"{where_p}: constant {f.const} of {f.var} outside [{lo}, {hi}]", p.column, p.text)


# -------------------------------------------------------------------- integer form
def compile_rule(equations: Sequence[Equation]) -> RuleConfig:
    """The integer configuration of checked ``equations`` (:class:`RuleConfig`), equations in
    :data:`TARGETS` order."""
    rows: list[tuple[int, ...]] = []
    for eq in sorted(equations, key=lambda e: TARGETS.index(e.target)):
        for p in eq.products:
            row = [TARGETS.index(eq.target), DEPENDENCIES.index(p.dependency), p.decimate, p.mantissa, p.exponent,
                   len(p.factors)]
            for f in p.factors:
                row += [FACTOR_VARS.index(f.var), f.const, int(f.sgn)]
            rows.append(tuple(row))
    return RuleConfig(tuple(rows))


def decode(rows: Iterable[Sequence[int]]) -> tuple[Equation, ...]:
    """The equations of an integer configuration (the inverse of :func:`compile_rule`)."""
    by_target: dict[str, list[Product]] = {}
    for row in rows:
        target, dep, k, m, e, n = (int(v) for v in row[:6])
        factors = tuple(Factor(FACTOR_VARS[int(row[6 + 3 * i])], int(row[7 + 3 * i]), bool(row[8 + 3 * i]))
                        for i in range(n))
        by_target.setdefault(TARGETS[target], []).append(Product(DEPENDENCIES[dep], m, e, factors, k))
    return tuple(Equation(t, tuple(ps)) for t, ps in by_target.items())


def format_rule(equations: Sequence[Equation] | RuleConfig) -> str:
    """A rule string equivalent to ``equations`` (or a :class:`RuleConfig`): ``parse`` of it gives
    the same equations. Equations are joined by ``"; "``."""
    eqs = equations.equations() if isinstance(equations, RuleConfig) else equations
    return "; ".join(f"{eq.target} = " + _sum(eq.products) for eq in eqs)


def _sum(products: Sequence[Product]) -> str:
    out = ""
    for i, p in enumerate(products):
        body = _term(abs(p.mantissa), p)
        if i == 0:
            out = ("-" if p.mantissa < 0 else "") + body
        else:
            out += (" - " if p.mantissa < 0 else " + ") + body
    return out


def _term(mag: int, p: Product) -> str:
    parts = []
    if mag != 1:
        parts.append(str(mag))
    if p.exponent:
        parts.append(f"2^{p.exponent}")
    parts.append(f"u{p.decimate}" if p.dependency == "u" else p.dependency)
    for f in p.factors:
        inner = f.var if not f.const else f"{f.var}{'+' if f.const > 0 else '-'}{abs(f.const)}"
        parts.append(f"sgn({inner})" if f.sgn else (f"({inner})" if f.const else inner))
    return "*".join(parts)

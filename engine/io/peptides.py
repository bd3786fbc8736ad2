"""Mass table, modification notations and peptides as ProForma token lists.

Everything is resolved offline from this table (pyteomics would download unimod.obo
for named modifications). A peptide is a tuple of ProForma tokens: an optional
N-terminal token such as ``[Acetyl]-`` followed by residues such as ``C[Carbamidomethyl]``;
``"".join(tokens)`` is the ProForma string. ``ResidueTable`` is a model's vocabulary of
such tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

PROTON = 1.007276466621
H2O = 18.010564684
NH3 = 17.026549101
CO = 27.994914620

AA_MASSES = {
    "G": 57.021463721,
    "A": 71.037113805,
    "S": 87.032028435,
    "P": 97.052763875,
    "V": 99.068413945,
    "T": 101.047678505,
    "C": 103.009184505,
    "L": 113.084064015,
    "I": 113.084064015,
    "N": 114.042927470,
    "D": 115.026943065,
    "Q": 128.058577540,
    "K": 128.094963050,
    "E": 129.042593135,
    "M": 131.040484645,
    "H": 137.058911875,
    "F": 147.068413945,
    "R": 156.101111050,
    "Y": 163.063328575,
    "W": 186.079312980,
}

# name -> (monoisotopic delta, Unimod accession); aliases map onto canonical names.
MODIFICATIONS = {
    "Carbamidomethyl": (57.021464, 4),
    "Oxidation": (15.994915, 35),
    "Deamidated": (0.984016, 7),
    "Acetyl": (42.010565, 1),
    "Carbamyl": (43.005814, 5),
    "Ammonia-loss": (-17.026549, 385),
    "Gln->pyro-Glu": (-17.026549, 28),
    "Glu->pyro-Glu": (-18.010565, 27),
    "Phospho": (79.966331, 21),
    "Methyl": (14.01565, 34),
    "Dimethyl": (28.0313, 36),
    "Amidated": (-0.984016, 2),
    "Formyl": (27.994915, 122),
    "Dioxidation": (31.989829, 425),
    "GlyGly": (114.042927, 121),
    "TMT6plex": (229.162932, 737),
    "iTRAQ4plex": (144.102063, 214),
    "Propionamide": (71.037114, 24),
    "Nitro": (44.985078, 354),
    "Pyro-carbamidomethyl": (39.994915, 26),
}
ALIASES = {
    "deamidation": "Deamidated",
    "cam": "Carbamidomethyl",
    "ox": "Oxidation",
    "oxidised": "Oxidation",
    "oxidized": "Oxidation",
    "phosphorylation": "Phospho",
    "acetylation": "Acetyl",
    "carbamylation": "Carbamyl",
    "o": "Oxidation",
}
BY_UNIMOD = {acc: name for name, (_, acc) in MODIFICATIONS.items()}
BY_LOWER = {name.lower(): name for name in MODIFICATIONS}
# "Pyro_glu" and friends name the residue-specific pyro-glutamate conversion.
PYRO_NAMES = {"pyro_glu", "pyro-glu", "pyroglu", "pyro-glu from q", "pyro-glu from e"}

DEFAULT_RESIDUES = (
    "G",
    "A",
    "S",
    "P",
    "V",
    "T",
    "C[Carbamidomethyl]",
    "L",
    "N",
    "D",
    "Q",
    "K",
    "E",
    "M",
    "H",
    "F",
    "R",
    "Y",
    "W",
    "M[Oxidation]",
    "N[Deamidated]",
    "Q[Deamidated]",
    "[Acetyl]-",
    "[Carbamyl]-",
    "[Ammonia-loss]-",
)

MASS_MATCH = 0.011  # Da: a signed-mass notation resolves to a named modification within this


class PeptideError(ValueError):
    """A peptide string that cannot be read or whose modification is unknown."""


def mod_name(text: str, residue: str | None) -> str:
    """Canonical modification name for a name / UNIMOD:n / alias, or PeptideError."""
    key = text.strip()
    if key.upper().startswith("UNIMOD:"):
        try:
            return BY_UNIMOD[int(key[7:])]
        except (ValueError, KeyError):
            raise PeptideError(f"unknown modification {key!r}") from None
    low = key.lower()
    if low in PYRO_NAMES:
        return "Glu->pyro-Glu" if residue == "E" else "Gln->pyro-Glu"
    if low in BY_LOWER:
        return BY_LOWER[low]
    if ALIASES.get(low):
        return ALIASES[low]
    raise PeptideError(f"unknown modification {key!r}")


def mod_from_mass(delta: float, residue: str | None) -> str:
    """Named modification for a signed mass when one matches, else the mass notation."""
    hits = [n for n, (m, _) in MODIFICATIONS.items() if abs(m - delta) < MASS_MATCH]
    if residue == "Q" and "Gln->pyro-Glu" in hits:
        return "Gln->pyro-Glu"
    if hits:
        return hits[0]
    return f"{delta:+.4f}"


def mod_mass(name: str) -> float:
    if name in MODIFICATIONS:
        return MODIFICATIONS[name][0]
    try:
        return float(name)
    except ValueError:
        raise PeptideError(f"unknown modification {name!r}") from None


def _resolve(text: str, residue: str | None) -> str:
    """A bracket content (name, UNIMOD:n or signed mass) -> canonical name or mass."""
    text = text.strip()
    if re.fullmatch(r"[+-]\d+(\.\d*)?", text):
        return mod_from_mass(float(text), residue)
    return mod_name(text, residue)


_NTERM = re.compile(r"^(?:\[([^\]]+)\]-?|([+-]\d+(?:\.\d*)?)-?)")
_RESIDUE = re.compile(r"([A-Z])(?:\[([^\]]+)\]|\(([^)]+)\)|([+-]\d+(?:\.\d*)?))?")


def parse_peptide(text: str) -> tuple[str, ...]:
    """Any common notation -> ProForma tokens (I kept as I; ``normalize_il`` writes L).

    Accepts ``PEPTIDE``, ``C+57.021``, ``C(+57.02)``, ``C[Carbamidomethyl]``,
    ``M[UNIMOD:35]``, ``+43.006-PEP``, ``[Acetyl]-PEP`` and ``_PEP_``-free plain text.
    """
    s = text.strip()
    if "/" in s:  # MSP names carry "/charge"
        s = s.split("/", 1)[0]
    tokens: list[str] = []
    m = _NTERM.match(s)
    if m:
        inner = m.group(1) or m.group(2)
        name = _resolve(inner, None)
        if name in ("Gln->pyro-Glu", "Glu->pyro-Glu"):  # written as a residue modification
            name = "Ammonia-loss" if name == "Gln->pyro-Glu" else name
        tokens.append(f"[{name}]-")
        s = s[m.end() :]
    pos = 0
    while pos < len(s):
        r = _RESIDUE.match(s, pos)
        if not r:
            raise PeptideError(f"cannot read peptide {text!r} at {s[pos : pos + 8]!r}")
        aa = r.group(1)
        if aa not in AA_MASSES:
            raise PeptideError(f"unknown residue {aa!r} in {text!r}")
        inner = r.group(2) or r.group(3) or r.group(4)
        tokens.append(aa if inner is None else f"{aa}[{_resolve(inner, aa)}]")
        pos = r.end()
    if not any(not t.endswith("-") for t in tokens):
        raise PeptideError(f"empty peptide {text!r}")
    return _pyro_to_nterm(tuple(tokens))


def _pyro_to_nterm(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """Pyro-glutamate is an N-terminal loss: write it as an N-terminal token."""
    for i, t in enumerate(tokens):
        if t.endswith("-"):
            continue
        if t in ("Q[Gln->pyro-Glu]", "E[Glu->pyro-Glu]"):
            nterm = "[Ammonia-loss]-" if t[0] == "Q" else "[Glu->pyro-Glu]-"
            return tokens[:i] + (nterm, t[0]) + tokens[i + 1 :]
        break
    return tokens


def apply_mods(sequence: str, mods: dict[int, str]) -> tuple[str, ...]:
    """Sequence plus {position: name} (0 = N-term, 1..L residues, -1 = C-term) -> tokens."""
    tokens: list[str] = []
    for i, aa in enumerate(sequence, start=1):
        if aa not in AA_MASSES:
            raise PeptideError(f"unknown residue {aa!r} in {sequence!r}")
        name = mods.get(i) or (mods.get(-1) if i == len(sequence) else None)
        tokens.append(aa if name is None else f"{aa}[{mod_name(name, aa)}]")
    for pos in mods:
        if not (0 <= pos <= len(sequence) or pos == -1):
            raise PeptideError(f"modification position {pos} outside {sequence}")
    if 0 in mods:
        canon = mod_name(mods[0], sequence[:1])
        if canon in ("Gln->pyro-Glu", "Glu->pyro-Glu"):
            tokens[0] = f"{sequence[0]}[{canon}]"
        else:
            tokens.insert(0, f"[{canon}]-")
    return _pyro_to_nterm(tuple(tokens))


def token_mass(token: str) -> float:
    """Residue mass of one ProForma token (N-terminal token: just its delta)."""
    if token.endswith("-"):
        return mod_mass(token[1:-2])
    aa = token[0]
    if aa not in AA_MASSES:
        raise PeptideError(f"unknown residue {aa!r}")
    if len(token) == 1:
        return AA_MASSES[aa]
    return AA_MASSES[aa] + mod_mass(token[2:-1])


def peptide_mass(tokens: tuple[str, ...]) -> float:
    """Sum of residue masses (no water)."""
    return float(sum(token_mass(t) for t in tokens))


def precursor_mz(tokens: tuple[str, ...], charge: int) -> float:
    return (peptide_mass(tokens) + H2O + charge * PROTON) / charge


def residue_mass_of(precursor_mz: float, charge: int) -> float:
    """Precursor residue mass M = mz*z - H2O - z*proton (the graph's sink)."""
    return precursor_mz * charge - H2O - charge * PROTON


def to_proforma(tokens: tuple[str, ...]) -> str:
    return "".join(tokens)


def normalize_il(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """I and L share a mass: the field compares peptides with I written as L."""
    return tuple(("L" + t[1:]) if t.startswith("I") else t for t in tokens)


def residue_masses(tokens: tuple[str, ...]) -> np.ndarray:
    """Per-residue masses with an N-terminal token folded into the first residue."""
    out: list[float] = []
    carry = 0.0
    for t in tokens:
        if t.endswith("-"):
            carry += token_mass(t)
            continue
        out.append(token_mass(t) + carry)
        carry = 0.0
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class ResidueTable:
    """The configurable vocabulary: ProForma tokens, their masses, N-terminal flags.
    (Derived arrays are cached: treat them as read-only.)"""

    tokens: tuple[str, ...] = DEFAULT_RESIDUES

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("duplicate tokens in residue table")
        for t in self.tokens:
            token_mass(t)
        if not any(not t.endswith("-") for t in self.tokens):
            raise ValueError("residue table has no residues")

    @cached_property
    def masses(self) -> np.ndarray:
        return np.array([token_mass(t) for t in self.tokens], dtype=np.float64)

    @cached_property
    def nterm(self) -> np.ndarray:
        return np.array([t.endswith("-") for t in self.tokens], dtype=bool)

    @cached_property
    def residue_masses(self) -> np.ndarray:
        return self.masses[~self.nterm]

    @cached_property
    def nterm_offsets(self) -> np.ndarray:
        """0 plus every N-terminal delta: a prefix mass may be shifted by one of them."""
        return np.concatenate([[0.0], self.masses[self.nterm]])

    def index(self, token: str) -> int:
        try:
            return self.tokens.index(token)
        except ValueError:
            raise PeptideError(f"token {token!r} is not in the residue table") from None

    def encode(self, tokens: tuple[str, ...]) -> list[int]:
        """Tokens -> ids (I read as L); PeptideError for residues outside the table."""
        return [self.index(t) for t in normalize_il(tokens)]

    def decode(self, ids) -> tuple[str, ...]:
        return tuple(self.tokens[int(i)] for i in ids)

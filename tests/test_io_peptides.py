"""engine.io.peptides: notations to ProForma tokens, masses, the residue table."""

import numpy as np
import pytest

from engine.io.peptides import (
    AA_MASSES,
    H2O,
    PROTON,
    PeptideError,
    ResidueTable,
    apply_mods,
    normalize_il,
    parse_peptide,
    peptide_mass,
    precursor_mz,
    residue_masses,
    to_proforma,
)

CAM = "C[Carbamidomethyl]"


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("PEPTIDE", tuple("PEPTIDE")),
        ("C+57.021M+15.995K", (CAM, "M[Oxidation]", "K")),
        ("C(+57.02)K", (CAM, "K")),
        ("C[Carbamidomethyl]M[Oxidation]", (CAM, "M[Oxidation]")),
        ("C[UNIMOD:4]N[UNIMOD:7]", (CAM, "N[Deamidated]")),
        ("+43.006-PEPK", ("[Carbamyl]-", "P", "E", "P", "K")),
        ("+42.011PEPK", ("[Acetyl]-", "P", "E", "P", "K")),
        ("[Acetyl]-PEPK", ("[Acetyl]-", "P", "E", "P", "K")),
        ("Q[Gln->pyro-Glu]K", ("[Ammonia-loss]-", "Q", "K")),
        ("-17.027QK", ("[Ammonia-loss]-", "Q", "K")),
        ("PEPK/2", ("P", "E", "P", "K")),
        ("M(O)K", ("M[Oxidation]", "K")),
    ],
)
def test_notations_resolve_to_proforma_tokens(text, tokens):
    assert parse_peptide(text) == tokens


def test_unknown_modification_and_residue_raise_one_line():
    with pytest.raises(PeptideError, match="unknown modification 'Frobnication'"):
        parse_peptide("C[Frobnication]K")
    with pytest.raises(PeptideError, match="unknown residue"):
        parse_peptide("PEBTIDE")
    with pytest.raises(PeptideError, match="unknown modification"):
        parse_peptide("C[UNIMOD:999999]")


def test_unnamed_mass_keeps_mass_notation():
    tokens = parse_peptide("K+12.3456")
    assert tokens == ("K[+12.3456]",)
    assert peptide_mass(tokens) == pytest.approx(AA_MASSES["K"] + 12.3456)


def test_peprec_positions_including_nterm_and_pyro():
    assert apply_mods("LCK", {0: "Carbamyl", 2: "Carbamidomethyl"}) == ("[Carbamyl]-", "L", CAM, "K")
    assert apply_mods("QHK", {1: "Pyro_glu"}) == ("[Ammonia-loss]-", "Q", "H", "K")
    with pytest.raises(PeptideError):
        apply_mods("QHK", {7: "Oxidation"})


def test_masses_and_precursor():
    tokens = parse_peptide("PEPTIDE")
    total = sum(AA_MASSES[a] for a in "PEPTIDE")
    assert peptide_mass(tokens) == pytest.approx(total, abs=1e-9)
    assert precursor_mz(tokens, 2) == pytest.approx((total + H2O + 2 * PROTON) / 2, abs=1e-9)
    # N-terminal modifications fold into the first residue for per-residue masses
    folded = residue_masses(parse_peptide("[Acetyl]-PEK"))
    assert folded.size == 3 and folded[0] == pytest.approx(AA_MASSES["P"] + 42.010565)
    assert to_proforma(parse_peptide("C+57.021K")) == "C[Carbamidomethyl]K"


def test_residue_table_encodes_il_and_rejects_outside_tokens():
    table = ResidueTable()
    assert table.encode(normalize_il(("I",))) == table.encode(("L",))
    with pytest.raises(PeptideError, match="not in the residue table"):
        table.encode(("C",))  # unmodified C is outside the default table
    assert table.nterm.sum() == 3
    assert np.allclose(table.nterm_offsets[0], 0.0)


def test_massivekb_labels_match_precursors(massivekb):
    from engine.io.spectra import read_spectra

    errs = [
        abs(precursor_mz(parse_peptide(s.label), s.charge) - s.precursor_mz) * s.charge
        for s in read_spectra([massivekb])
    ]
    assert len(errs) == 500
    assert max(errs) < 0.05  # every notation and modification resolved to the right mass


def test_pyro_glutamate_by_residue():
    """Pyro-glu from E loses water (Glu->pyro-Glu), from Q ammonia (Gln->pyro-Glu); both are
    written as N-terminal tokens in front of the residue."""
    from engine.io.peptides import mod_from_mass, mod_name

    assert mod_name("pyro-glu", "E") == "Glu->pyro-Glu"
    assert mod_name("pyro-glu", "Q") == "Gln->pyro-Glu"
    # -17.0265 is both Ammonia-loss and Gln->pyro-Glu: on Q the pyro-glu, elsewhere the first match
    assert mod_from_mass(-17.026549, "Q") == "Gln->pyro-Glu"
    assert mod_from_mass(-17.026549, "K") == "Ammonia-loss"
    assert parse_peptide("E[Glu->pyro-Glu]PK") == ("[Glu->pyro-Glu]-", "E", "P", "K")
    assert parse_peptide("Q-17.027PK") == ("[Ammonia-loss]-", "Q", "P", "K")
    assert apply_mods("EPK", {0: "Glu->pyro-Glu"}) == ("[Glu->pyro-Glu]-", "E", "P", "K")
    # a pyro-glu named for the other residue is kept on the residue as given, not moved to the
    # N-terminus as the wrong kind of token (its mass is still counted)
    assert apply_mods("QPK", {0: "Glu->pyro-Glu"}) == ("Q[Glu->pyro-Glu]", "P", "K")


def test_residue_table_decodes_ids_to_tokens():
    table = ResidueTable()
    ids = table.encode(("[Acetyl]-", "P", "I", CAM))
    assert table.decode(ids) == ("[Acetyl]-", "P", "L", CAM)
    assert table.decode(np.array(ids, dtype=np.int64)) == ("[Acetyl]-", "P", "L", CAM)

import numpy as np
import pytest
from engine_graphnovo.preprocess import ISOTOPE_SPACING, deisotope
from engine_graphnovo.simulator import SimConfig, isotope_ratios, modify, simulate, tryptic_peptides

from engine.io.peptides import CO, H2O, NH3, PROTON, parse_peptide, precursor_mz, residue_masses


def test_trypsin_rules():
    peps = tryptic_peptides(["AAAAAAAKPAAAAAAARBBAAAAAAAK"], min_len=2, max_len=40, missed=1)
    # K before P is not cleaved; B is not a standard residue so pieces with it are dropped
    assert "AAAAAAAKPAAAAAAAR" in peps
    assert "AAAAAAAK" not in peps
    assert all(set(p) <= set("ACDEFGHIKLMNPQRSTVWY") for p in peps)


def _theoretical(tokens, charge):
    rm = residue_masses(tokens)
    pre = np.cumsum(rm)[:-1]
    out = []
    for neutral in (pre, pre - CO, rm.sum() - pre + H2O):
        for z in range(1, max(1, min(3, charge - 1)) + 1):
            for loss in (0.0, H2O, NH3):
                out.append((neutral - loss + z * PROTON) / z)
    return np.concatenate(out)


def test_fragments_are_theoretical_ions_and_missing_rate_controls_them():
    rng = np.random.default_rng(0)
    tokens = parse_peptide("PEPTIDEKLLSAMPLER")
    clean = SimConfig(missing=(0.0, 0.0), noise_peaks=(0, 1), mass_error=0.0, precursor_ppm=0.0, isotopes=False)
    mz, inten, pmz, missing = simulate(tokens, 3, rng, clean)
    theo = _theoretical(tokens, 3)
    assert missing == 0.0 and mz.size > 20
    assert np.min(np.abs(mz[:, None] - theo[None, :]), axis=1).max() < 1e-6
    assert abs(pmz - precursor_mz(tokens, 3)) < 1e-9
    none = SimConfig(missing=(1.0, 1.0), noise_peaks=(0, 1), mass_error=0.0)  # isotopes of nothing: nothing
    mz, _, _, _ = simulate(tokens, 3, rng, none)
    assert mz.size == 0  # every cleavage missing, no noise: an empty spectrum


def test_modifications_stay_in_the_default_vocabulary():
    from engine.io.peptides import ResidueTable

    rng = np.random.default_rng(1)
    table = ResidueTable()
    for pep in ["QCMNK", "MMMNQQK", "ACDEFGHIKLMNPQRSTVWY"] * 20:
        table.encode(modify(pep, rng, SimConfig(p_oxidation=0.5, p_deamidation=0.5, p_nterm=0.5)))


def test_isotope_peaks_follow_each_fragment_and_deisotoping_removes_them():
    tokens = parse_peptide("PEPTIDEKLLSAMPLER")
    settings = dict(missing=(0.0, 0.0), noise_peaks=(0, 1), mass_error=0.0, precursor_ppm=0.0)
    mono, mono_int, pmz, _ = simulate(tokens, 3, np.random.default_rng(0), SimConfig(**settings, isotopes=False))
    full, full_int, _, _ = simulate(tokens, 3, np.random.default_rng(0), SimConfig(**settings))
    assert full.size > 2 * mono.size  # +1 and +2 peaks (above their size cut) after each fragment
    theo = _theoretical(tokens, 3)
    spacings = np.array([k * ISOTOPE_SPACING / z for k in (0, 1, 2) for z in (1, 2)])
    off = np.abs(full[:, None, None] - theo[None, :, None] - spacings[None, None, :]).min(axis=(1, 2))
    assert off.max() < 1e-6  # every peak is a fragment or one of its isotopes
    # the Poisson ratio: +1 / mono = 0.00055 x fragment mass, so heavier fragments have larger +1 peaks
    assert isotope_ratios(np.array([1000.0]))[0][0] == pytest.approx(0.55)
    peaks, _ = deisotope(full, full_int, tol=0.005)
    lone = np.abs(peaks[:, None] - theo[None, :]).min(axis=1) < 1e-6
    assert lone.mean() > 0.9  # what is left sits on fragment m/z (1+ after charge deconvolution)

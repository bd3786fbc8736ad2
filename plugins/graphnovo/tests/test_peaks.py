"""Peak processing: deisotoping with charge deconvolution, window selection, settings of old models."""

import numpy as np
import pytest
from engine_graphnovo.preprocess import ISOTOPE_SPACING, PreprocessConfig, deisotope, preprocess, window_top_k

from engine.io.peptides import PROTON


def envelope(mono_mz: float, z: int, intensities) -> tuple[list, list]:
    return [mono_mz + k * ISOTOPE_SPACING / z for k in range(len(intensities))], list(intensities)


def test_deisotoping_keeps_monoisotopic_peaks_and_moves_2plus_to_1plus():
    a_mz, a_int = envelope(500.25, 1, [100, 60, 20])
    b_mz, b_int = envelope(700.40, 2, [80, 50, 10])  # a 2+ fragment of neutral mass ~1398.79
    lone_mz, lone_int = [820.0], [30]
    mz = np.array(a_mz + b_mz + lone_mz)
    inten = np.array(a_int + b_int + lone_int, dtype=float)
    out_mz, out_int = deisotope(mz, inten, tol=0.01)
    order = np.argsort(out_mz)
    out_mz, out_int = out_mz[order], out_int[order]
    assert out_mz == pytest.approx([500.25, 820.0, 2 * (700.40 - PROTON) + PROTON])
    assert out_int == pytest.approx([180, 30, 140])  # each envelope's intensity is summed


def test_deisotoping_leaves_lone_and_rising_peaks_alone():
    # the second peak is MORE intense: not an isotope of the first (two fragments)
    mz = np.array([300.0, 300.0 + ISOTOPE_SPACING, 450.0])
    inten = np.array([10.0, 50.0, 5.0])
    out_mz, out_int = deisotope(mz, inten, tol=0.01)
    assert sorted(out_mz) == pytest.approx(sorted(mz))
    assert sorted(out_int) == pytest.approx(sorted(inten))


def test_window_top_k_keeps_the_most_intense_peaks_of_each_window():
    mz = np.array([110.0, 120.0, 130.0, 150.0, 210.0, 250.0, 390.0])
    inten = np.array([1.0, 5.0, 3.0, 4.0, 2.0, 1.0, 7.0])
    kept_mz, kept_int = window_top_k(mz, inten, window=100.0, k=2)
    assert sorted(kept_mz) == [120.0, 150.0, 210.0, 250.0, 390.0]
    assert sorted(kept_int) == [1.0, 2.0, 4.0, 5.0, 7.0]


def test_preprocess_applies_deisotoping_before_selection():
    mz_list, int_list = envelope(400.0, 1, [100, 55, 15])
    mz = np.array(mz_list + [600.0])
    inten = np.array(int_list + [40.0])
    on_mz, _ = preprocess(mz, inten, precursor_mz=1000.0, config=PreprocessConfig(top_n=2))
    off_mz, _ = preprocess(mz, inten, precursor_mz=1000.0, config=PreprocessConfig(top_n=2, deisotope=False))
    assert on_mz == pytest.approx([400.0, 600.0])  # the isotope peaks no longer take the budget
    assert off_mz == pytest.approx([400.0, 400.0 + ISOTOPE_SPACING])


def test_models_saved_before_the_new_settings_keep_their_peak_processing():
    old = {
        "min_mz": 50.0,
        "max_mz": 2500.0,
        "top_n": 150,
        "min_relative_intensity": 0.01,
        "remove_precursor_tol": 2.0,
        "sqrt_intensity": True,
    }
    cfg = PreprocessConfig.from_meta(old)
    assert cfg.deisotope is False and cfg.window_top_k == 0
    assert PreprocessConfig().deisotope is True  # new models deisotope

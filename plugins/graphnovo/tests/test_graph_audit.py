"""Where the true prefixes go: each true prefix ends in exactly one stage, on hand-made spectra."""

import dataclasses

import numpy as np
import pytest
from engine_graphnovo.graph import LEGACY_READINGS, READINGS, GraphBuilder, GraphConfig, true_prefixes
from engine_graphnovo.graph_audit import STAGES, StageTally, prefix_stages
from engine_graphnovo.preprocess import PreprocessConfig

from engine.interfaces import ConfigError, Spectrum
from engine.io.peptides import H2O, PROTON, ResidueTable, parse_peptide, precursor_mz, residue_masses

PEPTIDE = "SAMPLEPEPTIDER"


def spectrum(mz, inten, charge=2) -> Spectrum:
    tokens = parse_peptide(PEPTIDE)
    return Spectrum(
        ref="t",
        precursor_mz=precursor_mz(tokens, charge),
        charge=charge,
        mz=np.asarray(mz, float),
        intensity=np.asarray(inten, float),
        label=PEPTIDE,
    )


@pytest.fixture(scope="module")
def parts():
    rm = residue_masses(parse_peptide(PEPTIDE))
    return rm, true_prefixes(rm), GraphBuilder(ResidueTable())


def test_each_prefix_lands_in_the_stage_that_lost_it(parts):
    rm, pre, builder = parts
    M = rm.sum()
    b = pre + PROTON
    mz = [b[0], b[1], b[2], M - pre[3] + H2O + PROTON]  # prefixes 0-3 read as b / y ions
    inten = [1.0, 1.0, 1e-6, 1.0]  # prefix 2: under the 1 % filter (after the square root)
    mz.append(b[4] - H2O)  # prefix 4 only as a b - H2O peak: a reading the paper's graph does not use
    inten.append(1.0)
    counts = prefix_stages(spectrum(mz, inten), rm, builder, PreprocessConfig(deisotope=False))
    assert sum(counts.values()) == pre.size
    assert counts["in_graph"] == 3  # prefixes 0, 1 (b) and 3 (y)
    assert counts["peak_processing"] == 1
    assert counts["not_read"] == 1
    assert counts["no_fragment_peak"] == pre.size - 5
    assert counts["node_cap"] == counts["node_building"] == 0
    wider = GraphBuilder(ResidueTable(), GraphConfig(readings=tuple(READINGS)))
    counts = prefix_stages(spectrum(mz, inten), rm, wider, PreprocessConfig(deisotope=False))
    assert counts["in_graph"] == 4 and counts["not_read"] == 0  # the loss reading now proposes it


def test_the_node_cap_is_a_stage_of_its_own(parts):
    rm, pre, _ = parts
    rng = np.random.default_rng(0)
    mz = np.concatenate([pre + PROTON, rng.uniform(100, 1400, 300)])
    inten = np.concatenate([np.full(pre.size, 0.05), rng.uniform(0.5, 1.0, 300)])  # loud noise
    tight = GraphBuilder(ResidueTable(), GraphConfig(max_nodes=8))
    prep = PreprocessConfig(deisotope=False, top_n=1000)
    counts = prefix_stages(spectrum(mz, inten), rm, tight, prep)
    assert counts["node_cap"] > 0
    loose = GraphBuilder(ResidueTable(), dataclasses.replace(tight.config, max_nodes=10_000))
    assert prefix_stages(spectrum(mz, inten), rm, loose, prep)["in_graph"] == pre.size


def test_tally_fractions_add_up():
    tally = StageTally()
    tally.add(dict.fromkeys(STAGES, 1))
    tally.add({"in_graph": 4})
    result = tally.result()
    assert result["true_prefixes"] == 10
    assert result["in_graph"] == pytest.approx(0.5)
    assert sum(result[s] for s in STAGES) == pytest.approx(1.0)


def test_readings_are_checked_and_old_models_keep_the_papers_four():
    with pytest.raises(ConfigError, match="unknown"):
        GraphConfig(readings=("b", "z-dot"))
    old = {
        "ms2_tol": 0.02,
        "ms1_ppm": 5.0,
        "a_ion_max_mz": 250.0,
        "y2_min_mz": 400.0,
        "max_nodes": 128,
        "local_window": 50.0,
    }
    assert GraphConfig.from_meta(old).readings == LEGACY_READINGS == ("a", "b", "y", "y2")
    assert GraphConfig.from_meta({**old, "readings": ["b", "y"]}).readings == ("b", "y")

"""Kind-level input and output that components share instead of each writing its own.

For sequencers: ``spectra`` (MGF, mzML, mzXML, MSP readers), ``peptides`` (masses,
ProForma, residue tables), ``mztab`` (mzTab / CSV / skipped.tsv writers); for all:
``files`` (atomic writes, output checks). Submodules are imported on demand, and
pyteomics (the ``spectra`` extra) only when an MGF, mzML or mzXML file is read.
"""

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SPECTRA = DATA / "spectra"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture
def massivekb():
    return need(SPECTRA / "massivekb" / "massivekb_selected_500.mgf")

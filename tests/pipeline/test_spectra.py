"""orthoscope.spectra: every matrix's singular values, equal to svdvals; bad matrices named."""

import pytest
import torch

import orthoscope
from orthoscope.architectures import find_matrices, read_matrix
from orthoscope.errors import SourceError
from orthoscope.sources import open_checkpoint
from tests.helpers import Q0, copy_with


def test_spectra_equal_svdvals_of_every_matrix(planted):
    base = planted[0]
    spectra = orthoscope.spectra(base)
    ckpt = open_checkpoint(base)
    refs, _ = find_matrices(ckpt, False)
    assert list(spectra) == [r.name for r in refs] and len(spectra) == 14
    for ref in refs:
        expected = torch.linalg.svdvals(read_matrix(ckpt, ref).double())
        assert torch.allclose(spectra[ref.name], expected, rtol=1e-9, atol=1e-12), ref.name
    assert list(orthoscope.spectra(base, layers={1}, kinds={"o"})) == ["model.layers.1.self_attn.o_proj.weight"]


def test_a_nan_matrix_is_named(planted, tmp_path):
    value = torch.zeros(64, 64)
    value[3, 5] = float("nan")
    bad = copy_with(planted[0], tmp_path / "bad", Q0, value)
    with pytest.raises(SourceError, match=f"{Q0}: 1 NaN/Inf entries"):
        orthoscope.spectra(bad)


def test_spectra_checks_its_options_like_compare(planted):
    from orthoscope.errors import OrthoscopeError

    with pytest.raises(OrthoscopeError, match="unknown --device 'bogus'"):
        orthoscope.spectra(planted[0], device="bogus")
    assert sorted(orthoscope.spectra(planted[0], layers="1", kinds="q")) == ["model.layers.1.self_attn.q_proj.weight"]

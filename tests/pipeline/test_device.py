"""`--device`: the same code on every available device gives the CPU's values (CPU-only machines run the CPU leg)."""

import pytest
import torch

import orthoscope
from orthoscope.errors import OrthoscopeError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metrics", ["all", "sign-free"])
def test_device_matches_cpu_float64(planted, device, metrics):
    reference = orthoscope.compare(*planted, kinds={"o", "down"}, precision="f64", cache=False).table
    table = orthoscope.compare(*planted, kinds={"o", "down"}, metrics=metrics, precision="f32", device=device,
                               cache=False).table
    for column in ("a_geo", "disp", "asym", "sym_frac", "sym_frac_null"):
        assert table[column].to_numpy() == pytest.approx(reference[column].to_numpy(), abs=1e-4), column
    assert table.intruders.tolist() == reference.intruders.tolist()  # counts: exact (the post's Gram, float64)
    if metrics == "all":
        assert table.incons.to_numpy() == pytest.approx(reference.incons.to_numpy(), abs=1e-4)


def test_cuda_without_a_gpu_is_a_clear_error(planted):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(OrthoscopeError, match="device 'cuda' was asked for but torch sees no CUDA device"):
        orthoscope.compare(*planted, device="cuda")

"""save_model / load_model and shared-tensor handling, against the reference."""

import pytest
import safetensors.torch as ref_pt
import torch
from torch import nn

import tensorseal.torch as ts_pt
from tensorseal import safe_open


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.norm = nn.LayerNorm(4)


def shared_cases():
    a = torch.arange(16.0)
    b = torch.zeros(4, 4)
    c = torch.ones(6)
    return [
        {"a": a, "b": b},
        {"a": a, "a_view": a[:8], "b": b},
        {"x": b, "y": b, "z": b[1]},
        {"lo": a[:8], "hi": a[8:]},
        {"lo": a[:9], "hi": a[8:]},
        {"c1": c, "c2": c.view(2, 3), "other": b.view(16)},
        {"empty": torch.zeros(0), "e2": torch.zeros(0)},
    ]


@pytest.mark.parametrize("case", range(len(shared_cases())))
def test_find_shared_tensors_matches_reference(case):
    d = shared_cases()[case]
    ours = ts_pt._find_shared_tensors(d)
    ref = ref_pt._find_shared_tensors(d)
    assert sorted(map(sorted, ours)) == sorted(map(sorted, ref))


@pytest.mark.parametrize("case", range(len(shared_cases())))
def test_remove_duplicate_names_matches_reference(case):
    d = shared_cases()[case]
    try:
        ref = ref_pt._remove_duplicate_names(d)
    except RuntimeError:
        with pytest.raises(RuntimeError, match="covering|covers|spans"):
            ts_pt._remove_duplicate_names(d)
        return
    assert dict(ts_pt._remove_duplicate_names(d)) == dict(ref)
    names = list(d)
    for pref in names:
        assert dict(ts_pt._remove_duplicate_names(d, preferred_names=[pref])) == dict(
            ref_pt._remove_duplicate_names(d, preferred_names=[pref])
        )
        assert dict(ts_pt._remove_duplicate_names(d, discard_names=[pref])) == dict(
            ref_pt._remove_duplicate_names(d, discard_names=[pref])
        )


def test_save_model_records_dropped_names_and_loads_back(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    p_ours, p_ref = tmp_path / "ours.safetensors", tmp_path / "ref.safetensors"
    ts_pt.save_model(model, p_ours)
    ref_pt.save_model(model, str(p_ref))
    assert p_ours.read_bytes() == p_ref.read_bytes()
    with safe_open(p_ours, "pt") as f:
        assert f.metadata() == {"head.weight": "embed.weight"}
        assert "head.weight" not in f.keys()

    for loader, path in ((ts_pt.load_model, p_ref), (ref_pt.load_model, p_ours), (ts_pt.load_model, p_ours)):
        fresh = Tied()
        missing, unexpected = loader(fresh, path if loader is ts_pt.load_model else str(path))
        assert missing == [] or missing == set()
        assert list(unexpected) == []
        assert fresh.head.weight is fresh.embed.weight
        for k, v in model.state_dict().items():
            assert torch.equal(fresh.state_dict()[k], v)


def test_save_model_keeps_user_metadata(tmp_path):
    model = Tied()
    p = tmp_path / "m.safetensors"
    ts_pt.save_model(model, p, metadata={"head.weight": "mine", "x": "y"})
    with safe_open(p, "np") as f:
        assert f.metadata() == {"head.weight": "mine", "x": "y"}


def test_load_model_strict_reports_missing_and_unexpected(tmp_path):
    p = tmp_path / "m.safetensors"
    ts_pt.save_file({"norm.weight": torch.ones(4), "extra": torch.zeros(1)}, p)
    with pytest.raises(RuntimeError) as e:
        ts_pt.load_model(Tied(), p)
    msg = str(e.value)
    assert "Error(s) in loading state_dict for Tied" in msg
    assert 'Missing key(s) in state_dict: "embed.weight", "norm.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra"' in msg
    missing, unexpected = ts_pt.load_model(Tied(), p, strict=False)
    assert sorted(missing) == ["embed.weight", "norm.bias"]
    assert unexpected == ["extra"]


def test_save_model_force_contiguous(tmp_path):
    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.arange(12.0).reshape(3, 4).t())

    p = tmp_path / "t.safetensors"
    ts_pt.save_model(T(), p)
    assert torch.equal(ts_pt.load_file(p)["w"], torch.arange(12.0).reshape(3, 4).t())
    with pytest.raises(ValueError, match="force_contiguous=True"):
        ts_pt.save_model(T(), p, force_contiguous=False)

"""Compressed npz members and deflated torch records: converted by streaming (issue 11,
item 14), equal to numpy.load / torch.load tensor by tensor, with memory bounded by a
buffer rather than by the member."""

import io
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as np_load_file
from safetensors.torch import load_file

METHODS = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}


def npz(path, arrays, method):
    with zipfile.ZipFile(path, "w") as z:
        for name, a in arrays.items():
            b = io.BytesIO()
            np.lib.format.write_array(b, a)
            z.writestr(name + ".npy", b.getvalue(), compress_type=method)


def convert(tensorseal_bin, src, out):
    r = subprocess.run([str(tensorseal_bin), "convert", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("method", sorted(METHODS))
def test_compressed_npz_equals_numpy(method, tmp_path, tensorseal_bin):
    rng = np.random.default_rng(7)
    arrays = {
        "f32": rng.standard_normal((33, 17)).astype(np.float32),
        "i64": np.arange(1000, dtype=np.int64),
        "f16_fortran": np.asfortranarray(rng.standard_normal((8, 5)).astype(np.float16)),
        "u8": rng.integers(0, 255, 4097, dtype=np.uint8),
        "empty": np.zeros((0, 3), np.float32),
    }
    src = tmp_path / f"a_{method}.npz"
    npz(src, arrays, METHODS[method])
    out = tmp_path / "a.safetensors"
    convert(tensorseal_bin, src, out)
    got = np_load_file(str(out))
    ref = np.load(src)
    assert sorted(got) == sorted(ref.files)
    for k in ref.files:
        assert got[k].dtype == ref[k].dtype, k
        assert got[k].shape == ref[k].shape, k
        assert np.array_equal(got[k], ref[k]), k


def test_bad_crc_is_refused(tmp_path, tensorseal_bin):
    src = tmp_path / "crc.npz"
    npz(src, {"x": np.arange(64, dtype=np.float32)}, zipfile.ZIP_BZIP2)
    data = bytearray(src.read_bytes())
    # The central directory's CRC of the only member (offset 16 in its record).
    cd = data.rindex(b"PK\x01\x02")
    data[cd + 16] ^= 0xFF
    lh = data.index(b"PK\x03\x04")
    data[lh + 14] ^= 0xFF
    src.write_bytes(bytes(data))
    with pytest.raises(Exception):
        np.load(src)["x"]
    r = subprocess.run([str(tensorseal_bin), "convert", str(src), str(tmp_path / "o.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "CRC" in r.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_deflated_torch_storage_equals_torch(tmp_path, tensorseal_bin):
    base = io.BytesIO()
    t = {"w": torch.randn(64, 33), "v": torch.arange(100, dtype=torch.int32)[10:50:3]}
    torch.save(t, base)
    src = tmp_path / "deflated.pt"
    zin = zipfile.ZipFile(io.BytesIO(base.getvalue()))
    with zipfile.ZipFile(src, "w") as z:
        for n in zin.namelist():
            z.writestr(n, zin.read(n), compress_type=zipfile.ZIP_DEFLATED)
    out = tmp_path / "d.safetensors"
    convert(tensorseal_bin, src, out)
    ref = torch.load(src, weights_only=True)
    got = load_file(str(out))
    for k in ref:
        assert torch.equal(got[k], ref[k].contiguous()), k


PEAK = (
    "import resource,subprocess,sys\n"
    "r=subprocess.run(sys.argv[1:],capture_output=True)\n"
    "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


@pytest.mark.parametrize("method", ["deflate", "bzip2"])
def test_large_compressed_member_memory_stays_bounded(method, tmp_path, tensorseal_bin):
    n = (96 << 20) // 4 if method == "deflate" else (64 << 20) // 4
    a = (np.arange(n, dtype=np.int64) % 1009).astype(np.float32)
    src = tmp_path / f"big_{method}.npz"
    npz(src, {"big": a}, METHODS[method])
    out = tmp_path / "big.safetensors"
    r = subprocess.run([sys.executable, "-c", PEAK, str(tensorseal_bin), "convert", str(src), str(out)],
                       capture_output=True, text=True, check=True)
    rc, peak_kib = map(int, r.stdout.split())
    assert rc == 0
    member = a.nbytes
    # Inflating the member whole would take at least its size; streaming takes a buffer.
    assert peak_kib * 1024 < member // 2, f"peak RSS {peak_kib} KiB for a {member}-byte member"
    got = np_load_file(str(out))["big"]
    assert np.array_equal(got, np.load(src)["big"])

"""Several threads reading one file (and one safe_open) at the same time."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

import tensorseal.numpy as ts_np
import tensorseal.torch as ts_pt
from tensorseal import safe_open


def make(tmp_path, n=24):
    d = {f"t{i:02d}": np.full((64, 1 + i), i, dtype=np.float32) for i in range(n)}
    p = tmp_path / "threads.safetensors"
    ts_np.save_file(d, p)
    return p, d


def test_threads_share_one_safe_open(tmp_path):
    p, d = make(tmp_path)
    errors = []
    barrier = threading.Barrier(8)
    with safe_open(p, "np") as f:

        def work(k):
            barrier.wait()
            for rep in range(20):
                for name in sorted(d)[k % 3 :: 2]:
                    t = f.get_tensor(name)
                    s = f.get_slice(name)[1:, ::2]
                    if not (np.array_equal(t, d[name]) and np.array_equal(s, d[name][1:, ::2])):
                        errors.append(name)

        with ThreadPoolExecutor(8) as ex:
            list(ex.map(work, range(8)))
    assert errors == []


def test_threads_load_file_concurrently(tmp_path):
    p, d = make(tmp_path)

    def work(k):
        if k % 2:
            out = ts_np.load_file(p)
            return all(np.array_equal(out[n], d[n]) for n in d)
        out = ts_pt.load_file(p)
        return all(torch.equal(out[n], torch.from_numpy(d[n])) for n in d)

    with ThreadPoolExecutor(6) as ex:
        assert all(ex.map(work, range(12)))


def test_threads_save_concurrently(tmp_path):
    d = {f"w{i}": np.arange(1000, dtype=np.int64) * i for i in range(10)}

    def work(k):
        p = tmp_path / f"out{k % 3}.safetensors"
        ts_np.save_file(d, p)
        return ts_np.save(d)

    with ThreadPoolExecutor(6) as ex:
        outs = list(ex.map(work, range(12)))
    assert all(o == outs[0] for o in outs)
    for k in range(3):
        assert (tmp_path / f"out{k}.safetensors").read_bytes() == outs[0]
    # No temporary files left behind.
    assert sorted(x.name for x in tmp_path.iterdir()) == [f"out{k}.safetensors" for k in range(3)]


def test_parallel_read_spanning_many_chunks(tmp_path):
    # Larger than several 16 MiB read chunks, with tensors straddling chunk
    # boundaries, read with 1 to 4 threads.
    rng = np.random.default_rng(1)
    d = {f"w{i}": rng.integers(0, 255, size=(9 << 20) + 13 * i, dtype=np.uint8) for i in range(4)}
    p = tmp_path / "big.safetensors"
    ts_np.save_file(d, p)
    from tensorseal._raw import exported  # the stable-ABI build's Buffer has no buffer protocol
    from tensorseal._tensorseal import read_file

    for threads in (1, 2, 4):
        entries, _meta, buf = read_file(p, threads=threads)
        assert len(buf) == sum(v.nbytes for v in d.values())
        whole = np.frombuffer(exported(buf), dtype=np.uint8)
        for name, _dtype, _shape, start, end in entries:
            assert np.array_equal(whole[start:end], d[name])
    out = ts_np.load_file(p)
    assert all(np.array_equal(out[k], v) for k, v in d.items())

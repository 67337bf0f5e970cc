"""Loading tensors straight into device memory.

One pipeline serves ``safe_open(..., device="cuda:N")``, ``load_file(...,
device="cuda:N")`` and any loader of several files (:func:`load_files`):

- device memory for every wanted tensor is allocated up front, one
  allocation per tensor (``alloc="tensor"``, the default: each tensor has a
  storage of its own, as with the reference) or one per dtype (``"group"``:
  tensors are views of it, so they count as sharing memory);
- a ring of staging buffers (pinned host memory for CUDA/ROCm) is allocated
  once per loader; Rust reader threads (``_tensorseal.Stream``, GIL
  released) fill its slots in file order, with ``O_DIRECT`` for cold files
  where the file system allows it;
- a dedicated copy stream drains each filled slot with asynchronous
  host-to-device copies; an event per slot says when it may be refilled.

Host memory held is the ring (``staging_bytes``, 256 MiB by default),
whatever the size of the checkpoint. Device ``"cpu"`` runs the same ring
with plain memory and synchronous copies: the host target the CPU tests use.

Knobs (keyword arguments of :func:`load_files` and :class:`Loader`, or
environment variables for ``safe_open``/``load_file``):
``TENSORSEAL_STAGING_BYTES`` (ring size), ``TENSORSEAL_STAGING_SLOTS``
(slots, 16), ``TENSORSEAL_DEVICE_ALLOC`` (``tensor`` or ``group``),
``TENSORSEAL_DIRECT`` (``auto``, ``on``, ``off``), ``TENSORSEAL_THREADS``
(reader threads).
"""

from __future__ import annotations

import os
from collections import deque

from . import _dtypes
from ._errors import InvalidArgumentError
from ._tensorseal import SafeFile, SafetensorError, Stream

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Dict, List, Optional, Sequence, Tuple

_ALIGN = 4096
DEFAULT_STAGING_BYTES = 256 << 20
#: Many small slots rather than a few large ones: each slot is read by one
#: thread, so the slot count bounds the reads in flight (page-cache copies
#: run at a few GB/s per thread), and 16 MiB copies already reach a PCIe
#: link's full bandwidth.
DEFAULT_SLOTS = 16

#: Statistics of the last load in this process (for tests and benchmarks).
last_stats: "Dict[str, Any]" = {}


def _env_int(name: str, value: "Optional[int]", default: int) -> int:
    if value is None:
        text = os.environ.get(name)
        if text is None:
            return default
        try:
            value = int(text, 0)
        except ValueError:
            raise InvalidArgumentError(f"{name}={text!r} is not an integer") from None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"{name.lower().replace('tensorseal_', '')} must be a positive int, not {value!r}")
    return value


def _env_choice(name: str, value: "Optional[str]", choices: "Tuple[str, ...]") -> str:
    if value is None:
        value = os.environ.get(name, choices[0])
    if value not in choices:
        what = name.lower().replace("tensorseal_", "")
        raise InvalidArgumentError(f"{what} must be one of {', '.join(map(repr, choices))}, not {value!r}")
    return value


def _torch_shape(code: str, shape: "List[int]", name: str) -> "List[int]":
    """The torch shape for a header shape (F4 packs two values per byte)."""
    if code != "F4":
        return list(shape)
    if not shape or shape[-1] % 2:
        raise SafetensorError(
            f"tensor {name!r}: F4 shape {shape} has an odd last dimension, which "
            "torch.float4_e2m1fn_x2 (two values per byte) cannot represent"
        )
    return [*shape[:-1], shape[-1] // 2]


def _drop_locals(e: BaseException) -> None:
    """Clears the local variables of the finished frames ``e``'s traceback
    holds (tensors of a failed load must not live on in a kept exception);
    frames still running are left alone."""
    import traceback

    traceback.clear_frames(e.__traceback__)


class _CudaTarget:
    """Copies on a dedicated stream of a CUDA (or ROCm) device, out of
    pinned staging memory; an event per slot."""

    pinned = True

    def __init__(self, dev, slots: int):
        import torch

        self.torch = torch
        self.device = dev
        self.stream = torch.cuda.Stream(device=dev)
        self.events = [torch.cuda.Event() for _ in range(slots)]

    def start(self) -> None:
        # The destination tensors were allocated on the caller's stream,
        # possibly in memory that work queued there still uses: the copies
        # wait for that work.
        self.stream.wait_stream(self.torch.cuda.current_stream(self.device))

    def context(self):
        return self.torch.cuda.stream(self.stream)

    def record(self, slot: int) -> None:
        self.events[slot].record(self.stream)

    def done(self, slot: int) -> bool:
        return self.events[slot].query()

    def wait(self, slot: int) -> None:
        self.events[slot].synchronize()

    def finish(self) -> None:
        self.stream.synchronize()


class _HostTarget:
    """The host target: "device" tensors in cpu memory, synchronous copies.
    Runs the same ring and ordering as a GPU, so CPU tests exercise them."""

    pinned = False

    def __init__(self, dev, slots: int):
        pass

    def start(self) -> None:
        pass

    def context(self):
        import contextlib

        return contextlib.nullcontext()

    def record(self, slot: int) -> None:
        pass

    def done(self, slot: int) -> bool:
        return True

    def wait(self, slot: int) -> None:
        pass

    def finish(self) -> None:
        pass


class Loader:
    """Loads tensors of safetensors files onto one device through one ring
    of staging buffers, allocated on first use and kept until :meth:`close`.

    Args:
        device: a ``torch.device`` of type ``"cuda"`` (CUDA or ROCm) or
            ``"cpu"`` (the host target).
        staging_bytes: ring size in bytes (default 256 MiB, or
            ``TENSORSEAL_STAGING_BYTES``); split into ``slots`` slots.
        slots: number of slots (default 16, or ``TENSORSEAL_STAGING_SLOTS``).
        alloc: ``"tensor"`` (one device allocation per tensor, default) or
            ``"group"`` (one per dtype, tensors are views of it).
        direct: ``"auto"`` (``O_DIRECT`` for files not in the page cache),
            ``"on"`` or ``"off"`` (``TENSORSEAL_DIRECT``).
        threads: reader threads (default ``TENSORSEAL_THREADS`` or the CPUs,
            at most 8).
    """

    def __init__(
        self,
        device,
        *,
        staging_bytes: "Optional[int]" = None,
        slots: "Optional[int]" = None,
        alloc: "Optional[str]" = None,
        direct: "Optional[str]" = None,
        threads: "Optional[int]" = None,
    ):
        import torch

        self.device = torch.device(device)
        if self.device.type == "cuda":
            target = _CudaTarget
        elif self.device.type == "cpu":
            target = _HostTarget
        else:
            raise InvalidArgumentError(f"device {self.device} has no staged loader (cuda or cpu only)")
        self.staging_bytes = _env_int("TENSORSEAL_STAGING_BYTES", staging_bytes, DEFAULT_STAGING_BYTES)
        self.slots = _env_int("TENSORSEAL_STAGING_SLOTS", slots, DEFAULT_SLOTS)
        self.alloc = _env_choice("TENSORSEAL_DEVICE_ALLOC", alloc, ("tensor", "group"))
        self.direct = _env_choice("TENSORSEAL_DIRECT", direct, ("auto", "on", "off"))
        self.threads = None if threads is None else _env_int("TENSORSEAL_THREADS", threads, 1)
        self._target_class = target
        self.size_hint = 0  # bytes later loads are expected to want (sizes the ring)
        self._target = None
        self._raw: "List[Any]" = []  # the ring's allocations
        self._ring: "List[Any]" = []  # aligned slot views (uint8 tensors)
        self._buffers: "List[Any]" = []  # the same as numpy arrays (buffer protocol)
        self.stats: "Dict[str, Any]" = {}

    # --- the ring -----------------------------------------------------------

    def _ensure_ring(self, wanted: int) -> None:
        """Allocates the ring on first use: ``slots`` slots of
        ``staging_bytes / slots`` (rounded to 4096, at least 8192), fewer and
        smaller when ``wanted`` bytes need less."""
        if self._ring:
            return
        import torch

        slot_bytes = max(2 * _ALIGN, (self.staging_bytes // self.slots) // _ALIGN * _ALIGN)
        need = -(-max(wanted, 1) // _ALIGN) * _ALIGN + _ALIGN
        if need < slot_bytes:
            slot_bytes = max(2 * _ALIGN, need)
        n = max(1, min(self.slots, -(-need // (slot_bytes - _ALIGN))))
        self._target = self._target_class(self.device, n)
        pinned = self._target.pinned
        for _ in range(n):
            raw = torch.empty(slot_bytes + _ALIGN, dtype=torch.uint8, pin_memory=pinned)
            skip = -raw.data_ptr() % _ALIGN  # aligned for O_DIRECT
            view = raw[skip : skip + slot_bytes]
            self._raw.append(raw)
            self._ring.append(view)
            self._buffers.append(view.numpy())
        self.stats = {
            "slot_bytes": slot_bytes,
            "slots": n,
            "pinned": pinned,
            "alloc": self.alloc,
            "direct_reads": 0,
            "buffered_reads": 0,
            "direct_fallbacks": 0,
            "bytes_read": 0,
            "chunks": 0,
            "copies": 0,
            "threads": 0,
        }

    def close(self) -> None:
        """Frees the ring (pinned memory goes back to torch's host allocator)."""
        if self._target is not None:
            self._target.finish()
        self._buffers.clear()
        self._ring.clear()
        self._raw.clear()
        self._target = None

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- loading ------------------------------------------------------------

    def _allocate(self, entries: "Sequence[Tuple[str, str, List[int], int, int]]"):
        """Device tensors for ``entries``: ``(out, dests, ranges)``, where
        ``out`` maps names to tensors, ``dests`` are flat uint8 device
        buffers and ``ranges`` the ``(offset, len, dst, dst_offset)`` to fill."""
        import torch

        out: "Dict[str, Any]" = {}
        dests: "List[Any]" = []
        ranges: "List[Tuple[int, int, int, int]]" = []
        try:
            self._allocate_into(entries, out, dests, ranges)
        except BaseException as e:
            # Out of device memory partway: free what was allocated, even
            # while the exception (and its frames) is kept.
            out.clear()
            dests.clear()
            _drop_locals(e)
            raise
        return out, dests, ranges

    def _allocate_into(self, entries, out, dests, ranges) -> None:
        import torch

        dev = self.device
        if self.alloc == "group":
            sizes: "Dict[str, int]" = {}
            for _name, code, _shape, start, end in entries:
                sizes[code] = sizes.get(code, 0) + (end - start)
            group = {}
            for code, size in sizes.items():
                if size:
                    group[code] = len(dests)
                    dests.append(torch.empty(size, dtype=torch.uint8, device=dev))
            used = dict.fromkeys(sizes, 0)
        for name, code, shape, start, end in entries:
            dt = _dtypes.torch_dtype(code, name)
            shp = _torch_shape(code, shape, name)
            n = end - start
            if n == 0:
                # reshape, not empty(shape): huge zero-size shapes overflow.
                out[name] = torch.empty(0, dtype=dt, device=dev).reshape(shp)
                continue
            if self.alloc == "group":
                d, at = group[code], used[code]
                used[code] = at + n
                buf = dests[d][at : at + n]
            else:
                d, at = len(dests), 0
                buf = torch.empty(n, dtype=torch.uint8, device=dev)
                dests.append(buf)
            ranges.append((start, n, d, at))
            out[name] = buf.view(dt).reshape(shp)

    def load(
        self,
        file: SafeFile,
        entries: "Sequence[Tuple[str, str, List[int], int, int]]",
        size_hint: int = 0,
    ) -> "Dict[str, Any]":
        """Loads ``entries`` (``(name, dtype, shape, start, end)`` as from
        ``SafeFile.entries()``) of ``file`` onto the device; returns the
        tensors by name, in ``entries`` order, once every copy is complete.
        ``size_hint`` (bytes later loads will want, e.g. the file's data
        size) sizes the ring when this call allocates it.

        On any error (file truncated while loading, read failure, device
        out of memory, interruption) the readers are cancelled and joined,
        in-flight copies are waited for, and the device memory allocated
        for this call is released before the exception propagates.
        """
        out, dests, ranges = self._allocate(entries)
        try:
            self._ensure_ring(max(size_hint, sum(r[1] for r in ranges)))
            self._fill(file, dests, ranges)
        except BaseException as e:
            # Nothing of this call may outlive it (the traceback keeps
            # the frames, and would keep the device memory).
            out.clear()
            dests.clear()
            ranges.clear()
            _drop_locals(e)
            raise
        return out

    def _fill(self, file: SafeFile, dests, ranges) -> None:
        if not ranges:
            return
        target = self._target
        ring = self._ring
        stream = Stream(file, ranges, self._buffers, self.threads, self.direct)
        n = len(ring)
        pending: "deque[int]" = deque()
        copies = 0
        try:
            target.start()
            with target.context():
                for i in range(len(stream)):
                    # Chunk i needs the slot chunk i - n holds: give back
                    # every chunk whose copies are done, and that one anyway.
                    while pending and (pending[0] <= i - n or target.done(pending[0] % n)):
                        j = pending.popleft()
                        target.wait(j % n)
                        stream.release(j)
                    slot, todo = stream.wait(i)
                    src = ring[slot]
                    for dst, dst_off, src_off, length in todo:
                        dests[dst][dst_off : dst_off + length].copy_(src[src_off : src_off + length], non_blocking=True)
                    copies += len(todo)
                    target.record(slot)
                    pending.append(i)
        finally:
            # No copy may read a slot once it is refilled or freed, and no
            # reader may write one once this returns.
            target.finish()
            stream.close()
            s = stream.stats()
            st = self.stats
            for k in ("direct_reads", "buffered_reads", "direct_fallbacks", "bytes_read", "chunks"):
                st[k] += s[k]
            st["threads"] = max(st["threads"], s["threads"])
            st["copies"] += copies
            st["live_threads"] = stream.live_threads()
            last_stats.clear()
            last_stats.update(st)


def load_files(
    files: "Sequence[Tuple[SafeFile, Sequence[Tuple[str, str, List[int], int, int]]]]",
    device,
    **options,
) -> "Dict[str, Any]":
    """Loads the given entries of several files (shards) onto ``device``
    through one ring; keyword options as for :class:`Loader`."""
    out: "Dict[str, Any]" = {}
    with Loader(device, **options) as loader:
        for f, entries in files:
            out.update(loader.load(f, entries))
    return out


def load_file(filename, device, **options) -> "Dict[str, Any]":
    """Every tensor of ``filename`` on ``device``, through the staged
    pipeline (the host target for ``device="cpu"``)."""
    from ._errors import open_file

    f = open_file(filename)
    return load_files([(f, f.entries())], device, **options)

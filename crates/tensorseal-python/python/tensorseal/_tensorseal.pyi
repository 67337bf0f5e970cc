"""Type stubs for the native module ``tensorseal._tensorseal``."""

import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

__version__: str

_Path = Union[str, "os.PathLike[str]"]
#: (name, dtype code, shape, start, end)
_Entry = Tuple[str, str, List[int], int, int]
#: (name, dtype code, shape, data): data is a C-contiguous byte buffer or a
#: callable returning an iterable of them.
_Spec = Tuple[str, str, List[int], Union[Any, Callable[[], Iterable[Any]]]]

class SafetensorError(Exception):
    """Invalid safetensors input, or a request it cannot satisfy."""

    kind: str

class Buffer:
    """Memory shared with numpy/torch through the buffer protocol (in the
    stable-ABI build, through `address` and `len`: `tensorseal._raw.exported`)."""

    @property
    def address(self) -> int: ...
    @property
    def kind(self) -> str:
        """"mmap" (copy-on-write file mapping), "mmap-ro" (read-only file
        mapping) or "memory" (memory of its own)."""
    @property
    def readonly(self) -> bool: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

class SafeFile:
    def __init__(self, path: _Path) -> None: ...
    def keys(self) -> List[str]: ...
    def offset_keys(self) -> List[str]: ...
    def metadata(self) -> Optional[Dict[str, str]]: ...
    def entries(self) -> List[_Entry]: ...
    def info(self, name: str) -> Tuple[str, List[int], int, int]: ...
    def map_cow(self, populate: bool = False) -> Buffer: ...
    def warm(self) -> bool: ...
    def cow_tensor(
        self, name: str, populate: bool = True, part: Optional[Tuple[int, int]] = None
    ) -> Tuple[Buffer, int, int]: ...
    def read_only_map(self) -> Buffer: ...
    def read_range(self, start: int, end: int, name: Optional[str] = None) -> Buffer: ...

class Stream:
    def __init__(
        self,
        file: SafeFile,
        ranges: List[Tuple[int, int, int, int]],
        slots: List[Any],
        threads: Optional[int] = None,
        direct: str = "auto",
    ) -> None: ...
    def __len__(self) -> int: ...
    def wait(self, i: int) -> Tuple[int, List[Tuple[int, int, int, int]]]: ...
    def release(self, i: int) -> None: ...
    def cancel(self) -> None: ...
    def close(self) -> None: ...
    def live_threads(self) -> int: ...
    def stats(self) -> Dict[str, int]: ...

BUFFER_PROTOCOL: bool

def read_file(
    path: _Path, threads: Optional[int] = None
) -> Tuple[List[_Entry], Optional[Dict[str, str]], Buffer]: ...
def deserialize(data: bytes) -> Tuple[List[_Entry], Optional[Dict[str, str]], Buffer]: ...
def serialize(specs: List[_Spec], metadata: Optional[Dict[str, str]] = None) -> bytes: ...
def serialize_file(
    specs: List[_Spec], path: _Path, metadata: Optional[Dict[str, str]] = None
) -> None: ...
def header_len(prefix: bytes, file_len: int) -> int: ...
def parse_header(
    json: bytes, data_len: int
) -> Tuple[List[_Entry], Optional[Dict[str, str]]]: ...
def quant_inspect(path: _Path) -> List[Dict[str, Any]]: ...
def quant_dequantize(
    src: _Path,
    dst: _Path,
    dtype: str = "bf16",
    max_shard_size: int = 5_000_000_000,
    chunk_bytes: int = 2_097_152,
    sync: bool = True,
) -> Dict[str, Any]: ...

# --- tensor- and pipeline-parallel I/O (src/parallel.rs) ---
# An assignment: None (skip), "whole", or (dim, start, stop).
_Assignment = Union[None, str, Tuple[int, int, int]]

def parallel_load(
    path: _Path,
    plan: str,
    rank: int,
    world_size: int,
    callables: List[Any],
    owned: Optional[List[str]] = None,
    read_gap: int = 0,
) -> Tuple[List[Tuple[str, str, List[int], int, int, _Assignment]], Buffer, Tuple[int, int, int]]: ...
def parallel_assignments(
    path: _Path, plan: str, world_size: int, callables: List[Any]
) -> Tuple[List[Tuple[str, str, List[int]]], List[List[_Assignment]]]: ...
def parallel_rank_block(
    plan: str,
    name: str,
    shape: List[int],
    rank: int,
    world_size: int,
    callables: List[Any],
    names: Optional[List[str]] = None,
) -> _Assignment: ...
def parallel_full_specs(
    plan: str, locals: List[List[Tuple[str, str, List[int]]]]
) -> List[Tuple[str, str, List[int]]]: ...

class ParallelSave:
    def __init__(
        self,
        path: _Path,
        specs: List[Tuple[str, str, List[int]]],
        plan: str,
        rank: int,
        world_size: int,
        metadata: Optional[Dict[str, str]] = None,
        max_shard_size: Optional[int] = None,
    ) -> None: ...
    def parts(self) -> List[Tuple[str, List[int]]]: ...
    def files(self) -> List[str]: ...
    def create_files(self) -> None: ...
    def write(self, buffers: List[Any]) -> int: ...

def cli_main(argv: List[str]) -> int:
    """Runs the ``tensorseal`` command line (``argv[0]`` is the program name); returns its exit code."""

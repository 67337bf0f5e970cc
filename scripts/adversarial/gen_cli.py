"""Adversarial samples for directory walking (issue 11, item 7): payloads reached only
through symlinks, as in the Hugging Face cache (snapshots/<rev>/name -> ../../blobs/<sha>).

Before symlinks were followed, `tensorseal scan DIR` skipped every link and passed these
directories clean, while any loader that opens the files by name runs the payload.
Samples are directories (loader `pickle_tree`: every file under the directory, links
followed, handed to pickle.load) or a symlink named directly (loader `pickle`).

Run with the venv python: scripts/adversarial/gen_cli.py
"""

from __future__ import annotations

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import Group, payload_pickle  # noqa: E402

TINY = pathlib.Path(__file__).resolve().parents[2] / "examples" / "tiny.safetensors"


def link(g: Group, at: str, to: str) -> None:
    p = g.path(at)
    os.symlink(to, p)


def main() -> None:
    g = Group("cli")
    evil = payload_pickle(2)

    # 1. The hub layout: the snapshot holds only links, the blob lives outside it.
    g.path("hub1/blobs/5e1f").write_bytes(evil)
    link(g, "hub1/snapshots/rev/pytorch_model.bin", "../../blobs/5e1f")
    g.path("hub1/blobs/c0nf").write_bytes(b'{"model_type": "x"}\n')
    link(g, "hub1/snapshots/rev/config.json", "../../blobs/c0nf")
    g.sample("hub1/snapshots/rev", None, "pickle_tree", "7", "HF snapshot: weights are a link to a blob outside the scanned folder")

    # 2. A chain of links (two hops, one through a directory link).
    g.path("chain/store/real/w").write_bytes(payload_pickle(4))
    link(g, "chain/store/current", "real")
    link(g, "chain/model/hop", "../store/current/w")
    link(g, "chain/model/weights.pkl", "hop")
    g.sample("chain/model", None, "pickle_tree", "7", "link -> link -> directory link -> file")

    # 3. A symlinked sub-directory whose target is outside the scanned folder.
    g.path("subdir/outside/layer.bin").write_bytes(payload_pickle(0))
    g.path("subdir/model").mkdir(parents=True, exist_ok=True)
    link(g, "subdir/model/layers", "../outside")
    g.sample("subdir/model", None, "pickle_tree", "7", "directory link to a folder outside the scanned one")

    # 4. One blob under two names: the first (a text-looking name) must not hide the second.
    g.path("alias/blobs/b1").write_bytes(evil)
    link(g, "alias/snap/a_notes.txt", "../blobs/b1")
    link(g, "alias/snap/model.pt", "../blobs/b1")
    g.sample("alias/snap", None, "pickle_tree", "7", "two links to one malicious blob, scanned once per extension")

    # 5. A symlink named directly.
    link(g, "direct.bin", "hub1/blobs/5e1f")
    g.sample("direct.bin", None, "pickle", "7", "a symlink given on the command line")

    # Near misses: a clean snapshot made of links (and the same blob twice).
    g.path("hubok/blobs/aa11").write_bytes(TINY.read_bytes())
    link(g, "hubok/snapshots/rev/model.safetensors", "../../blobs/aa11")
    link(g, "hubok/snapshots/rev/copy.safetensors", "../../blobs/aa11")
    g.benign("hubok/snapshots/rev", None, "HF snapshot of safetensors links: clean, blob scanned once")
    g.benign("hubok", None, "the whole cache entry: blob and links, clean")
    g.write()


if __name__ == "__main__":
    main()

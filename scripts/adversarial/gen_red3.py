"""Red-team pass 3 samples: zip view tricks in torch zips (central vs. local names, a
second end record in the comment, a pickle prepended to a zip) and protocol-5 buffer
opcodes around a payload. Run with the venv python; writes tests/fixtures/adversarial/red3/."""

import pickle
import struct
import zlib

from common import Group, payload_pickle


def local(name, data, lname=None):
    ln = (lname or name).encode()
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                       len(ln), 0) + ln + data


def central(name, data, off):
    n = name.encode()
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, zlib.crc32(data), len(data),
                       len(data), len(n), 0, 0, 0, 0, 0, off) + n


def eocd(n, size, off, comment=b""):
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, size, off, len(comment)) + comment


def build(members, lnames=None, comment=b""):
    body, cd = bytearray(), bytearray()
    for name, data in members:
        off = len(body)
        body += local(name, data, (lnames or {}).get(name))
        cd += central(name, data, off)
    return bytes(body) + bytes(cd) + eocd(len(members), len(cd), len(body), comment)


def main():
    g = Group("red3")
    mal, benign = payload_pickle(2), pickle.dumps({"a": 1}, protocol=2)
    ver = ("archive/version", b"3\n")
    g.sample("lname_same_len.pt", build([("archive/data.pkl", mal), ver], {"archive/data.pkl": "archive/zzzz.pkl"}),
             "torch", "2", "local header name differs (same length): torch reads by the central name")
    g.sample("lname_longer.pt", build([("archive/data.pkl", mal), ver],
                                       {"archive/data.pkl": "archive/a_much_longer_name.bin"}),
             "torch", "2", "local name longer: data offset from the local lengths")
    g.sample("lname_upper.pt", build([("archive/DATA.PKL", mal), ver], {"archive/DATA.PKL": "archive/data.txt"}),
             "torch", "2", "central name in upper case, local name innocuous")
    # Second end record in the comment naming a hidden central directory: miniz reads the last.
    body, cd = bytearray(), bytearray()
    for n, d in [("archive/data.pkl", benign), ver]:
        off = len(body)
        body += local(n, d)
        cd += central(n, d, off)
    hoff = len(body)
    body += local("archive/data.pkl", mal)
    hcd = central("archive/data.pkl", mal, hoff) + central(ver[0], ver[1], len(local("archive/data.pkl", benign)))
    cd_off = len(body)
    fake = hcd + eocd(2, len(hcd), cd_off + len(cd) + 22)
    g.sample("eocd_in_comment.pt", bytes(body) + bytes(cd) + eocd(2, len(cd), cd_off, fake), "torch", "2",
             "a second EOCD in the comment names a hidden central directory with a malicious data.pkl")
    g.sample("pickle_before_zip.pt", mal + build([("archive/data.pkl", benign), ver]), "torch", "2",
             "a pickle prepended to a torch zip: not PK at 0, so torch.load takes the legacy path and unpickles it")
    # Protocol 5: buffer opcodes. Payload before NEXT_BUFFER runs (the opcode then raises without buffers).
    body5 = b"\x80\x05" + payload_pickle(4)[2:-1]
    g.sample("p5_payload_then_next_buffer.pkl", body5 + b"0\x97\x98.", "pickle", "4",
             "payload, POP, NEXT_BUFFER, READONLY_BUFFER: runs before pickle.load fails on the buffer")
    g.sample("p5_bytearray8_payload.pkl", b"\x80\x05\x96" + struct.pack("<Q", 3) + b"abc0" + payload_pickle(4)[2:],
             "pickle", "4", "BYTEARRAY8 then the payload")
    g.benign("p5_next_buffer_only.pkl", b"\x80\x05\x97\x98.", "NEXT_BUFFER alone: no globals")
    g.write()


if __name__ == "__main__":
    main()

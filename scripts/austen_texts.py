"""Extracts Jane Austen's six novels from Debian's r-cran-janeaustenr package without R.

The package keeps its data in R's lazy-load database: `Rdata.rdx` (a gzip-compressed serialized index: object
name -> (offset, length) in `Rdata.rdb`) and `Rdata.rdb` (records of a 4-byte big-endian length and a zlib stream,
each an R serialization, XDR format, of one object). Each novel is a character vector of lines. This reads just
enough of R's serialization format (R Internals, "Serialization formats") for that: pairlists, vectors, strings,
symbols and references.

Usage: austen_texts.py PACKAGE_ROOT OUTPUT_DIR  (PACKAGE_ROOT is the unpacked .deb; writes OUTPUT_DIR/<name>.txt)
"""
import gzip
import os
import struct
import sys
import zlib


class RReader:
    NILVALUE, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 254, 1, 2, 9, 10, 13, 14, 16, 19
    REFSXP, GLOBALENV, EMPTYENV, BASEENV, MISSINGARG, BASENAMESPACE = 255, 253, 242, 241, 251, 247

    def __init__(self, data):
        if data[:2] != b"X\n":
            raise ValueError("not an XDR R serialization")
        self.d, self.i, self.refs = data, 2, []
        version = self.int()
        self.int()  # writer's R version
        self.int()  # minimal reader version
        if version == 3:
            self.d_bytes(self.int())  # native encoding name

    def int(self):
        (v,) = struct.unpack(">i", self.d[self.i:self.i + 4])
        self.i += 4
        return v

    def d_bytes(self, n):
        b = self.d[self.i:self.i + n]
        self.i += n
        return b

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (self.NILVALUE, self.GLOBALENV, self.EMPTYENV, self.BASEENV, self.MISSINGARG, self.BASENAMESPACE):
            return None
        if kind == self.REFSXP:
            return self.refs[(flags >> 8) - 1]
        if kind == self.SYMSXP:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == self.CHARSXP:
            n = self.int()
            return None if n == -1 else self.d_bytes(n).decode("utf-8", "replace")
        if kind == self.LISTSXP:
            out = {}
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            out[tag] = car
            if isinstance(cdr, dict):
                out.update(cdr)
            return out
        if kind in (self.STRSXP, self.VECSXP):
            value = [self.item() for _ in range(self.int())]
        elif kind in (self.LGLSXP, self.INTSXP):
            value = list(struct.unpack(">%di" % (n := self.int()), self.d_bytes(4 * n)))
        elif kind == self.REALSXP:
            value = list(struct.unpack(">%dd" % (n := self.int()), self.d_bytes(8 * n)))
        else:
            raise ValueError("unsupported R type %d at byte %d" % (kind, self.i))
        if has_attr:
            attributes = self.item()
            names = attributes.get("names") if isinstance(attributes, dict) else None
            if kind == self.VECSXP and names and len(names) == len(value):
                return dict(zip(names, value))
        return value


def main(root, output):
    data = os.path.join(root, "usr/lib/R/site-library/janeaustenr/data")
    with open(os.path.join(data, "Rdata.rdx"), "rb") as f:
        index = RReader(gzip.decompress(f.read())).item()
    rdb = open(os.path.join(data, "Rdata.rdb"), "rb").read()
    variables = index["variables"]
    os.makedirs(output, exist_ok=True)
    for name, (offset, length) in zip(variables.keys(), variables.values()):
        record = rdb[int(offset):int(offset) + int(length)]
        obj = RReader(zlib.decompress(record[4:])).item()
        if isinstance(obj, list) and all(isinstance(x, str) or x is None for x in obj):
            text = "\n".join(x or "" for x in obj) + "\n"
            with open(os.path.join(output, name + ".txt"), "w", encoding="utf-8") as f:
                f.write(text)
            print("%s: %d lines, %d characters" % (name, len(obj), len(text)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

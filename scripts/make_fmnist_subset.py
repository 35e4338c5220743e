#!/usr/bin/env python3
"""Writes the Fashion-MNIST subset shipped in crates/data/assets/fashion-mnist-subset/.

Source: Debian's `dataset-fashion-mnist` (apt-get install -y dataset-fashion-mnist), gzipped IDX
files in /usr/share/datasets/fashion-mnist/. Takes the first TRAIN_PER_CLASS training images of
each class and the first TEST_PER_CLASS test images of each class, in file order, and writes them
in the same gzipped IDX format (deterministic: gzip mtime 0). Standard library only.

    python3 scripts/make_fmnist_subset.py [SOURCE_DIR]
"""
import gzip
import os
import struct
import sys

TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 100
SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
DST = os.path.join(os.path.dirname(__file__), "..", "crates", "data", "assets", "fashion-mnist-subset")


def read(name):
    with gzip.open(os.path.join(SRC, name), "rb") as f:
        return f.read()


def subset(prefix, per_class):
    images = read(f"{prefix}-images-idx3-ubyte.gz")
    labels = read(f"{prefix}-labels-idx1-ubyte.gz")
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    assert magic == 0x803 and struct.unpack(">II", labels[:8]) == (0x801, n)
    size = rows * cols
    keep, counts = [], [0] * 10
    for i in range(n):
        y = labels[8 + i]
        if counts[y] < per_class:
            counts[y] += 1
            keep.append(i)
    img = bytearray(struct.pack(">IIII", 0x803, len(keep), rows, cols))
    lab = bytearray(struct.pack(">II", 0x801, len(keep)))
    for i in keep:
        img += images[16 + i * size: 16 + (i + 1) * size]
        lab.append(labels[8 + i])
    for name, data in [(f"{prefix}-images-idx3-ubyte.gz", img), (f"{prefix}-labels-idx1-ubyte.gz", lab)]:
        with open(os.path.join(DST, name), "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
                f.write(bytes(data))
    print(f"{prefix}: {len(keep)} images")


os.makedirs(DST, exist_ok=True)
subset("train", TRAIN_PER_CLASS)
subset("t10k", TEST_PER_CLASS)

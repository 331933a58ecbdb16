"""Write the sample images under tasks/data/images/ (a few KB of synthetic PNG and JPEG).

    python tasks/data/make_images.py [OUTPUT_FOLDER]

PNGs are encoded here with numpy and zlib (no imaging library needed); JPEGs with PyAV
(the `video` extra) when it is installed. Pixel content is seeded, so it is the same on
every run. `scene_copy.jpg` is a brightened JPEG copy of `scene.png`: a near duplicate
whose perceptual hash and embedding `ImageEmbed` finds close to the original's.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write_png(path: str, rgb: np.ndarray) -> None:
    """An 8-bit RGB PNG, unfiltered rows, compressed with zlib."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as fh:
        fh.write(data)


def write_jpeg(path: str, rgb: np.ndarray) -> bool:
    """A JPEG through PyAV's mjpeg encoder; False when PyAV is not installed."""
    try:
        import av
    except ImportError:
        return False
    height, width, _ = rgb.shape
    with av.open(path, "w", format="image2") as container:
        stream = container.add_stream("mjpeg")
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return True


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:height, 0:width].astype(np.float32)


def images() -> dict[str, np.ndarray]:
    """Name -> RGB uint8 array of every sample image."""
    rng = np.random.default_rng(7)
    y, x = _grid(48, 64)
    gradient = np.stack([x / 63 * 255, y / 47 * 255, (1 - x / 63) * 200 + 20], axis=-1)
    y, x = _grid(64, 96)
    scene = np.stack([x / 95 * 120 + 40, y / 63 * 80 + 60, np.full_like(x, 150)], axis=-1)
    scene[(x - 30) ** 2 + (y - 34) ** 2 < 16**2] = [230, 60, 40]
    scene[(x > 56) & (x < 86) & (y > 10) & (y < 30)] = [30, 40, 200]
    scene[(y > 46) & (y < 54)] = [240, 240, 90]
    y, x = _grid(64, 64)
    checker = ((x // 8 + y // 8) % 2)[..., None] * np.array([230, 200, 40]) + 15
    y, x = _grid(60, 80)
    stripes = (np.sin(x / 4.0) * 0.5 + 0.5)[..., None] * np.array([255, 90, 160])
    noise = rng.integers(0, 256, size=(40, 40, 3))
    out = {
        "gradient.png": gradient,
        "scene.png": scene,
        "scene_copy.jpg": scene * 0.85 + 20,  # a near duplicate: brighter, re-encoded
        "shapes/checker.png": checker,
        "shapes/stripes.jpg": stripes,
        "noise.png": noise,
    }
    return {
        name: np.asarray(a, dtype=np.float32).round().astype(np.uint8) for name, a in out.items()
    }


def main(argv: list[str]) -> int:
    root = argv[0] if argv else os.path.join(HERE, "images")
    total = 0
    for name, rgb in images().items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if name.endswith(".png"):
            write_png(path, rgb)
        elif not write_jpeg(path, rgb):
            path = path.rsplit(".", 1)[0] + ".png"
            write_png(path, rgb)
        total += os.path.getsize(path)
        print(f"{os.path.relpath(path, root)}: {rgb.shape[1]}x{rgb.shape[0]}")
    print(f"{total} bytes under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

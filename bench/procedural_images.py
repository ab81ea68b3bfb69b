"""Procedural defect images per second: 1 process against 2 worker processes, side by side.

Each round renders the same ``--n`` samples (``vision.procedural.generate_dataset``: texture
crop, lighting, defect, exact mask and box) once in this process and once over 2 worker
processes (pool start-up included, as a run pays it), alternating, for ``--rounds`` rounds;
the median of each is printed with the ratio. ``--png`` also encodes image and mask as PNG
inside the timed work, as the generate stage does. The images are checked to be identical.
CPU seconds per image (this process plus its workers) are printed too: on a machine whose
cores are busy with other work, the wall-clock ratio cannot exceed the share of cores free,
while CPU per image shows what the work itself costs.

    python bench/procedural_images.py [--n 400] [--size 128] [--rounds 3] [--png]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from synthtune.vision.procedural import generate_dataset, mask_image, png_bytes


def _encoded(args: tuple[int, int, int]) -> list[bytes]:
    start, n, size = args
    out = []
    for sample in generate_dataset(n, seed=0, size=size, start=start):
        out += [png_bytes(sample.image), png_bytes(mask_image(sample.label.mask))]
    return out


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(n: int, size: int, workers: int, png: bool) -> tuple[float, list[bytes]]:
    started = time.perf_counter()
    if not png:
        samples = generate_dataset(n, seed=0, size=size, workers=workers)
        pixels = [s.image.tobytes() for s in samples]
        return time.perf_counter() - started, pixels
    chunk = max(1, n // (workers * 4))
    jobs = [(s, min(chunk, n - s), size) for s in range(0, n, chunk)]
    if workers == 1:
        parts = [_encoded(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_encoded, jobs))
    return time.perf_counter() - started, [b for part in parts for b in part]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--png", action="store_true", help="include PNG encoding")
    args = parser.parse_args()
    generate_dataset(6, size=args.size)  # load the textures once, outside the timing
    times: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    outputs: dict[int, list[bytes]] = {}
    for _ in range(args.rounds):
        for workers in (1, 2):
            before = cpu_seconds()
            seconds, outputs[workers] = run(args.n, args.size, workers, args.png)
            times[workers].append(seconds)
            cpu[workers].append(cpu_seconds() - before)
    assert outputs[1] == outputs[2], "worker processes changed the images"
    rate = {w: args.n / statistics.median(t) for w, t in times.items()}
    what = "render + PNG" if args.png else "render"
    print(f"{args.n} images {args.size}x{args.size}, {what}, median of {args.rounds} rounds")
    for workers, per_second in rate.items():
        per_image = statistics.median(cpu[workers]) / args.n * 1000
        name = f"{workers} process{'es' if workers > 1 else ''}"
        print(f"  {name}: {per_second:8.1f} images/s, {per_image:.2f} CPU ms per image")
    print(f"  2 workers / 1 process: {rate[2] / rate[1]:.2f}x")


if __name__ == "__main__":
    main()

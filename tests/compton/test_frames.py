"""compton.process_frames against a plain-Python reference, conservation and chunking rules."""

from __future__ import annotations

import numpy as np
import pytest

import compton
from compton._sim_frames import sparse_frames

SHAPE = (80, 80)


def reference(frames, *, dark, threshold, gain=None, icpt=None, next_frame=False, mode=None,
              window=3, edges):
    """Slow plain-Python implementation written from the definitions in compton.frames."""
    rows, cols = frames.shape[1:]
    found = [[0] * cols for _ in range(rows)]
    accepted = [[0] * cols for _ in range(rows)]
    rejected = [[0] * cols for _ in range(rows)]
    counts = {}
    edges = [float(e) for e in edges]
    half = window // 2
    prev_above = set()

    def accept(r, c, e):
        accepted[r][c] += 1
        if edges[0] <= e < edges[-1]:
            b = 0
            while not (edges[b] <= e < edges[b + 1]):
                b += 1
            counts[(r, c, b)] = counts.get((r, c, b), 0) + 1

    for frame in frames:
        above = set()
        for r in range(rows):
            for c in range(cols):
                if float(frame[r, c]) - float(dark[r, c]) > float(threshold[r, c]):
                    above.add((r, c))
        hits = {}
        for r, c in sorted(above):
            found[r][c] += 1
            if next_frame and (r, c) in prev_above:
                rejected[r][c] += 1
                continue
            v = float(frame[r, c]) - float(dark[r, c])
            if gain is not None:
                v = float(gain[r, c]) * v + float(icpt[r, c])
            hits[(r, c)] = v
        prev_above = above
        if mode is None:
            for (r, c), e in hits.items():
                accept(r, c, e)
        elif mode == "discriminate":
            for (r, c), e in hits.items():
                others = [
                    (rr, cc)
                    for rr in range(r - half, r + half + 1)
                    for cc in range(c - half, c + half + 1)
                    if (rr, cc) != (r, c) and (rr, cc) in hits
                ]
                if others:
                    rejected[r][c] += 1
                else:
                    accept(r, c, e)
        else:
            seen = set()
            for start in sorted(hits):
                if start in seen:
                    continue
                cluster, todo = [], [start]
                seen.add(start)
                while todo:
                    r, c = todo.pop()
                    cluster.append((r, c))
                    for dr in (-1, 0, 1):
                        for dc in (-1, 0, 1):
                            q = (r + dr, c + dc)
                            if q in hits and q not in seen:
                                seen.add(q)
                                todo.append(q)
                cluster.sort()
                total = 0.0
                best = cluster[0]
                for q in cluster:
                    total += hits[q]
                    if hits[q] > hits[best]:
                        best = q
                for q in cluster:
                    if q != best:
                        rejected[q[0]][q[1]] += 1
                accept(best[0], best[1], total)
    cube = np.zeros((rows, cols, len(edges) - 1), np.int64)
    for (r, c, b), n in counts.items():
        cube[r, c, b] = n
    return cube, np.array(found), np.array(accepted), np.array(rejected)


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(7)
    gain = rng.uniform(0.028, 0.032, SHAPE)
    icpt = rng.uniform(-0.5, 0.5, SHAPE)
    dark = rng.uniform(90, 110, SHAPE)
    frames, _ = sparse_frames(
        120, occupancy=0.03, fraction_double=0.3, fraction_triple=0.15, lines_kev=(20.0, 59.54, 93.9),
        gain_kev_per_adu=gain, intercept_kev=icpt, dark_adu=dark, noise_adu=4.0, seed=3,
    )
    # same pixel hit in consecutive frames, to exercise the next-frame correction
    frames[1:, 5, 5] = np.where(frames[:-1, 5, 5] > 300, 900, frames[1:, 5, 5])
    return frames, dark, gain, icpt


CASES = [
    dict(mode=None, next_frame=False, cal=False),
    dict(mode=None, next_frame=True, cal=True),
    dict(mode="discriminate", window=3, next_frame=False, cal=True),
    dict(mode="discriminate", window=5, next_frame=True, cal=False),
    dict(mode="add", next_frame=False, cal=True),
    dict(mode="add", next_frame=True, cal=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_kernel_matches_plain_python_reference(sim, case):
    frames, dark, gain, icpt = sim
    rng = np.random.default_rng(11)
    threshold = rng.uniform(15, 30, SHAPE)  # per-pixel, ADU
    cal = case["cal"]
    bw, emax = (0.2, 200.0) if cal else (4.0, 4000.0)
    cube = compton.process_frames(
        frames, dark=dark, threshold=threshold, gradients=gain if cal else None,
        intercepts=icpt if cal else None, next_frame=case["next_frame"],
        charge_sharing=case["mode"], window=case.get("window", 3), bin_width_kev=bw,
        e_max_kev=emax, device="cpu", chunk_frames=37,
    )
    ref_counts, found, acc, rej = reference(
        frames, dark=dark, threshold=threshold, gain=gain if cal else None,
        icpt=icpt if cal else None, next_frame=case["next_frame"], mode=case["mode"],
        window=case.get("window", 3), edges=cube.bin_edges_kev,
    )
    assert cube.units == ("keV" if cal else "ADU")
    np.testing.assert_array_equal(cube.found, found)
    np.testing.assert_array_equal(cube.accepted, acc)
    np.testing.assert_array_equal(cube.rejected, rej)
    np.testing.assert_array_equal(cube.counts, ref_counts)
    assert found.sum() > 5000
    if case["mode"] is None and not case["next_frame"]:
        assert rej.sum() == 0
    else:
        assert rej.sum() > 100


def test_counts_are_conserved(sim):
    frames, dark, gain, icpt = sim
    cube = compton.process_frames(
        frames, dark=dark, threshold=20.0, gradients=gain, intercepts=icpt, next_frame=True,
        charge_sharing="add", bin_width_kev=0.5, e_max_kev=80.0, device="cpu",
    )
    above = (frames.astype(np.float64) - dark) > 20.0  # events found, independently
    np.testing.assert_array_equal(cube.found, above.sum(axis=0))
    np.testing.assert_array_equal(cube.accepted + cube.rejected, cube.found)
    # 93.9 keV and summed clusters lie above 80 keV: the cube holds only the in-range ones
    assert 0 < cube.counts.sum() < cube.accepted.sum()
    ref_counts, *_ = reference(frames, dark=dark, threshold=np.full(SHAPE, 20.0), gain=gain,
                               icpt=icpt, next_frame=True, mode="add", edges=cube.bin_edges_kev)
    assert cube.counts.sum() == ref_counts.sum()


def test_results_do_not_depend_on_chunking(sim):
    frames, dark, gain, icpt = sim
    kw = dict(dark=dark, threshold=20.0, gradients=gain, intercepts=icpt, next_frame=True,
              charge_sharing="discriminate", device="cpu")
    whole = compton.process_frames(frames, chunk_frames=len(frames), **kw)
    cuts = [0, 1, 2, 30, 31, 77, len(frames)]
    pieces = compton.process_frames((frames[a:b] for a, b in zip(cuts[:-1], cuts[1:])), **kw)
    np.testing.assert_array_equal(whole.counts, pieces.counts)
    np.testing.assert_array_equal(whole.rejected, pieces.rejected)
    assert pieces.n_frames == len(frames)


def test_partial_histogram_merges_do_not_change_the_cube(sim, monkeypatch):
    """uint16 partial histograms are merged every 65535 frames per block; force it often."""
    import compton.frames as cf

    frames, dark, gain, icpt = sim
    kw = dict(dark=dark, threshold=20.0, gradients=gain, intercepts=icpt, charge_sharing="add",
              device="cpu", chunk_frames=37)
    ref = compton.process_frames(frames, **kw)
    monkeypatch.setattr(cf, "_UINT16_FRAMES", 3)
    small = compton.process_frames(frames, **kw)
    np.testing.assert_array_equal(small.counts, ref.counts)
    np.testing.assert_array_equal(small.rejected, ref.rejected)
    # one pixel hit in every frame: more events than a tiny uint16 budget would hold
    one = np.zeros((50, 80, 80), np.uint16)
    one[:, 2, 3] = 500
    cube = compton.process_frames(one, threshold=10, bin_width_kev=10, e_max_kev=1000, device="cpu")
    assert cube.counts[2, 3, 50] == 50


@pytest.mark.parametrize("mode", [None, "discriminate", "add"])
def test_crowded_frames_match_reference(mode):
    """About 800 events per frame: the buffered histogram cells are added several times per call."""
    rng = np.random.default_rng(5)
    frames = rng.normal(100.0, 3.0, (150, 80, 80))
    hit = rng.random(frames.shape) < 0.12
    frames[hit] += rng.uniform(30, 3000, hit.sum())
    frames = np.round(frames).astype(np.uint16)
    dark = np.full(SHAPE, 100.0)
    cube = compton.process_frames(frames, dark=dark, threshold=20.0, next_frame=True,
                                  charge_sharing=mode, bin_width_kev=5, e_max_kev=5000,
                                  device="cpu", chunk_frames=150)
    ref_counts, found, acc, rej = reference(frames, dark=dark, threshold=np.full(SHAPE, 20.0),
                                            next_frame=True, mode=mode, edges=cube.bin_edges_kev)
    assert found.sum() > 100_000 and acc.sum() > 30_000  # > 26,368 buffered cells per call
    np.testing.assert_array_equal(cube.found, found)
    np.testing.assert_array_equal(cube.accepted, acc)
    np.testing.assert_array_equal(cube.rejected, rej)
    np.testing.assert_array_equal(cube.counts, ref_counts)


def test_worker_threads_and_pieces_do_not_change_the_cube(sim, monkeypatch):
    """One worker vs several pulling 1-frame pieces, with frequent per-block merges."""
    import numba

    import compton.frames as cf

    frames, dark, gain, icpt = sim
    kw = dict(dark=dark, threshold=20.0, gradients=gain, intercepts=icpt, next_frame=True,
              charge_sharing="add", device="cpu", chunk_frames=50)
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = compton.process_frames(frames, **kw)
    finally:
        numba.set_num_threads(n)
    monkeypatch.setattr(cf, "_PIECE_FRAMES", 1)
    monkeypatch.setattr(cf, "_UINT16_FRAMES", 4)
    many = compton.process_frames(frames, **kw)
    np.testing.assert_array_equal(many.counts, one.counts)
    np.testing.assert_array_equal(many.accepted, one.accepted)
    np.testing.assert_array_equal(many.rejected, one.rejected)
    assert one.counts.sum() > 1000


@pytest.mark.parametrize("populate", ["madvise", "touch"])
def test_bin_stream_chunks_equal_the_file_after_page_drops(tmp_path, monkeypatch, populate):
    """The .bin stream maps the file once; dropping old page-table entries loses no data."""
    import compton.io as cio

    raw = np.random.default_rng(9).integers(0, 2**14, (300, 80, 80), dtype=np.uint16)
    path = tmp_path / "run.bin"
    raw.astype("<u2").tofile(path)
    monkeypatch.setattr(cio, "_DROP_LAG_FRAMES", 10)
    monkeypatch.setattr(cio, "_DROP_BATCH_BYTES", 1)
    if populate == "touch":
        monkeypatch.setattr(cio, "_MADV_POPULATE_READ", -12345)  # rejected by the OS: touch pages
    chunks = list(cio._iter_bin_raw(str(path), 7))  # all kept: the early ones were dropped
    assert [len(c) for c in chunks] == [7] * 42 + [6]
    np.testing.assert_array_equal(np.concatenate(chunks), raw)
    streamed = np.concatenate(list(compton.iter_frames(path, chunk_frames=64)))
    np.testing.assert_array_equal(streamed, compton.read_bin(path))


def test_half_open_bins_at_edges_and_top():
    frames = np.zeros((6, 80, 80), np.uint16)
    values = [10, 19, 20, 99, 100, 150]  # ADU; bins of 10 over [0, 100)
    for k, v in enumerate(values):
        frames[k, 3, 4] = v
    cube = compton.process_frames(frames, threshold=0, bin_width_kev=10, e_max_kev=100, device="cpu")
    spec = cube.counts[3, 4]
    assert spec[1] == 2 and spec[2] == 1 and spec[9] == 1  # 10, 19 -> bin 1; 20 -> 2; 99 -> 9
    assert spec.sum() == 4  # 100 and 150 are accepted but outside [0, 100)
    assert cube.accepted[3, 4] == 6 and cube.counts.sum() == 4
    np.testing.assert_allclose(cube.bin_edges_kev, np.arange(0, 101, 10))


def test_two_pixel_event_addition_and_discrimination_by_hand():
    frames = np.zeros((1, 80, 80), np.uint16)
    frames[0, 10, 10], frames[0, 10, 11] = 300, 500  # a double event, 800 ADU in total
    frames[0, 40, 40], frames[0, 42, 42] = 200, 250  # two singles two pixels apart
    kw = dict(threshold=50, bin_width_kev=1, e_max_kev=1000, device="cpu")
    add = compton.process_frames(frames, charge_sharing="add", **kw)
    assert add.counts[10, 11, 800] == 1 and add.counts[10, 10].sum() == 0
    assert add.rejected[10, 10] == 1 and add.accepted[10, 11] == 1
    assert add.counts[40, 40, 200] == 1 and add.counts[42, 42, 250] == 1
    d3 = compton.process_frames(frames, charge_sharing="discriminate", window=3, **kw)
    assert d3.counts.sum() == 2 and d3.rejected.sum() == 2  # the pair goes, both singles stay
    d5 = compton.process_frames(frames, charge_sharing="discriminate", window=5, **kw)
    assert d5.counts.sum() == 0 and d5.rejected.sum() == 4


def test_addition_tie_goes_to_first_pixel_in_row_major_order():
    frames = np.zeros((1, 80, 80), np.uint16)
    frames[0, 20, 31], frames[0, 21, 30], frames[0, 21, 31] = 400, 400, 100  # tie 400/400
    cube = compton.process_frames(frames, threshold=50, charge_sharing="add", bin_width_kev=1,
                                  e_max_kev=1000, device="cpu")
    assert cube.counts[20, 31, 900] == 1 and cube.counts.sum() == 1
    assert cube.rejected[21, 30] == 1 and cube.rejected[21, 31] == 1


def test_next_frame_correction_by_hand():
    frames = np.zeros((4, 80, 80), np.uint16)
    frames[:3, 7, 7] = [400, 300, 200]  # three consecutive hits: only the first survives
    frames[3, 7, 7] = 0
    cube = compton.process_frames(frames, threshold=50, next_frame=True, bin_width_kev=1,
                                  e_max_kev=1000, device="cpu", chunk_frames=1)
    assert cube.accepted[7, 7] == 1 and cube.rejected[7, 7] == 2 and cube.counts[7, 7, 400] == 1


def test_threshold_and_calibration_files(tmp_path, sim):
    frames, dark, gain, icpt = sim
    thr = np.random.default_rng(2).uniform(15, 30, SHAPE)
    for name, arr in [("thr.txt", thr), ("g.txt", gain), ("c.txt", icpt)]:
        compton.write_values(tmp_path / name, arr)
    a = compton.process_frames(frames[:40], dark=dark, threshold=tmp_path / "thr.txt",
                               gradients=tmp_path / "g.txt", intercepts=tmp_path / "c.txt",
                               device="cpu")
    b = compton.process_frames(frames[:40], dark=dark, threshold=thr, gradients=gain,
                               intercepts=icpt, device="cpu")
    np.testing.assert_array_equal(a.counts, b.counts)


def test_dark_auto_is_the_per_pixel_median():
    rng = np.random.default_rng(3)
    dark = rng.uniform(80, 120, SHAPE)
    frames, _ = sparse_frames(400, occupancy=0.01, dark_adu=dark, noise_adu=3.0, seed=12)
    cube = compton.process_frames(frames, dark="auto", threshold=20, bin_width_kev=8,
                                  e_max_kev=4000, device="cpu", chunk_frames=300)
    med = np.median(frames[:300], axis=0)  # the first chunk
    assert np.max(np.abs(med - dark)) < 1.5  # the median recovers the simulated offset
    ref = compton.process_frames(frames, dark=med, threshold=20, bin_width_kev=8, e_max_kev=4000,
                                 device="cpu")
    np.testing.assert_array_equal(cube.counts, ref.counts)


def test_larger_multi_module_frames():
    frames, _ = sparse_frames(20, shape=(160, 80), occupancy=0.02, seed=5)
    cube = compton.process_frames(frames, dark=100, threshold=20, charge_sharing="add",
                                  bin_width_kev=8, e_max_kev=4000, device="cpu")
    ref, *_ = reference(frames, dark=np.full((160, 80), 100.0), threshold=np.full((160, 80), 20.0),
                        mode="add", edges=cube.bin_edges_kev)
    np.testing.assert_array_equal(cube.counts, ref)


@pytest.mark.parametrize(
    "kwargs, frames_shape, match",
    [
        ({}, (3, 80, 81), "multiple of 80"),
        ({}, (3, 40, 80), "multiple of 80"),
        ({"gradients": np.ones((80, 79)), "intercepts": np.zeros((80, 80))}, (3, 80, 80), "gradients"),
        ({"gradients": np.ones((80, 80))}, (3, 80, 80), "together"),
        ({"charge_sharing": "merge"}, (3, 80, 80), "charge_sharing"),
        ({"window": 4, "charge_sharing": "discriminate"}, (3, 80, 80), "window"),
        ({"bin_width_kev": 0.3, "e_max_kev": 1.0}, (3, 80, 80), "whole number of bins"),
    ],
)
def test_bad_input_gives_input_error(kwargs, frames_shape, match):
    with pytest.raises(compton.InputError, match=match):
        compton.process_frames(np.zeros(frames_shape, np.uint16), device="cpu", **kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gpu_cube_identical_to_cpu(sim, case):
    frames, dark, gain, icpt = sim
    cal = case["cal"]
    kw = dict(dark=dark, threshold=np.random.default_rng(11).uniform(15, 30, SHAPE),
              gradients=gain if cal else None, intercepts=icpt if cal else None,
              next_frame=case["next_frame"], charge_sharing=case["mode"],
              window=case.get("window", 3), bin_width_kev=0.2 if cal else 4.0,
              e_max_kev=200.0 if cal else 4000.0, chunk_frames=37)
    cpu = compton.process_frames(frames, device="cpu", **kw)
    gpu = compton.process_frames(frames, device="gpu", **kw)
    assert gpu.attrs["device"] == "gpu"
    np.testing.assert_array_equal(gpu.counts, cpu.counts)
    np.testing.assert_array_equal(gpu.accepted, cpu.accepted)
    np.testing.assert_array_equal(gpu.rejected, cpu.rejected)


@pytest.mark.gpu
def test_gpu_accepts_cupy_chunks(sim):
    import cupy as cp

    frames, dark, *_ = sim
    kw = dict(dark=dark, threshold=20.0, charge_sharing="add", bin_width_kev=4, e_max_kev=4000)
    cpu = compton.process_frames(frames, device="cpu", **kw)
    gpu = compton.process_frames((cp.asarray(frames[i : i + 50]) for i in range(0, 120, 50)), **kw)
    np.testing.assert_array_equal(gpu.counts, cpu.counts)

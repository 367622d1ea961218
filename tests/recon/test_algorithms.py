"""Reconstruction algorithms against analytic truth, ASTRA, scikit-image and a plain direct sum."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from recon import algorithms
from recon._errors import InputError
from recon._filters import FILTERS, filter_response
from recon.algorithms import reconstruct
from recon.simulate import shepp_logan, shepp_logan_sinogram

ALGOS = ("fourier", "fbp")


def circle_mask(n: int, margin: float = 1.0) -> np.ndarray:
    c = np.arange(n) - (n - 1) / 2
    y, x = np.meshgrid(c, c, indexing="ij")
    return x**2 + y**2 < (n / 2 - margin) ** 2


def rmse(a, b, mask) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b)[mask] ** 2)))


def square_sinogram(theta, width, center, x0, y0, half, value=1.0):
    """Exact line integrals of an axis-aligned square (centre x0, y0, half side, pixels).

    The projection of a uniform square is the density of x cos + y sin for (x, y) uniform on
    the square, times its area: the convolution of two boxes, a trapezoid.
    """
    s = np.arange(width) - center
    out = np.zeros((theta.size, width))
    for i, t in enumerate(theta):
        a, b = sorted((half * abs(np.cos(t)), half * abs(np.sin(t))), reverse=True)
        z = np.abs(s - (x0 * np.cos(t) + y0 * np.sin(t)))
        if b < 1e-12:
            dens = np.where(z <= a, 1.0 / (2 * a), 0.0)
        else:
            dens = np.where(z <= a - b, 1.0 / (2 * a), np.clip((a + b - z) / (4 * a * b), 0.0, None))
        out[i] = (2 * half) ** 2 * value * dens
    return out


def quadrature_weights(theta):
    """Trapezoid weights (radians) of angles on the circle of period pi: half the neighbour span."""
    t = np.mod(theta, np.pi)
    idx = np.argsort(t)
    ts = t[idx]
    ext = np.concatenate([ts[-1:] - np.pi, ts, ts[:1] + np.pi])
    w = np.empty_like(ts)
    w[idx] = (ext[2:] - ext[:-2]) / 2
    return w


def disc_sinogram(theta, width, center, x0, y0, radius, value=1.0):
    s = np.arange(width) - center - (x0 * np.cos(theta) + y0 * np.sin(theta))[:, None]
    return 2.0 * value * np.sqrt(np.clip(radius**2 - s**2, 0.0, None))


# ----------------------------------------------------------------------------- accuracy


def test_shepp_logan_512_rmse_within_10_percent_of_astra(capsys):
    pytest.importorskip("astra")
    n, n_angles = 512, 720
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    sino = shepp_logan_sinogram(n, theta).astype(np.float32)
    truth = shepp_logan(n)
    mask = circle_mask(n)
    err = {
        "astra-fbp": rmse(reconstruct(sino, theta, algorithm="fbp", backend="astra", device="cpu"), truth, mask),
        "fourier": rmse(reconstruct(sino, theta, algorithm="fourier", device="cpu"), truth, mask),
        "fbp": rmse(reconstruct(sino, theta, algorithm="fbp", device="cpu"), truth, mask),
    }
    with capsys.disabled():
        print("\nShepp-Logan 512 px, 720 angles, RMSE inside the circle:", {k: round(v, 5) for k, v in err.items()})
    assert err["astra-fbp"] < 0.05  # ASTRA itself reconstructs sensibly
    assert err["fourier"] <= 1.1 * err["astra-fbp"]
    assert err["fbp"] <= 1.1 * err["astra-fbp"]


def test_direct_fourier_equals_plain_direct_sum():
    """The gridding method against sum_a q_a(x cos + y sin + c) evaluated exactly (trigonometric sums).

    The filter is the documented one: the band-limited ramp times sinc(nu)^2.
    """
    rng = np.random.default_rng(1)
    n_angles, width, center = 40, 36, 19.3
    theta = np.sort(rng.uniform(0, np.pi, n_angles))
    weights = quadrature_weights(theta)
    sinos = rng.random((n_angles, 2, width)).astype(np.float32)
    for n in (31, 32):
        got = reconstruct(sinos, theta, center, algorithm="fourier", device="cpu", out_size=n)
        one = reconstruct(sinos[:, 0], theta, center, algorithm="fourier", device="cpu", out_size=n)
        # independent evaluation: filtered spectrum, then the inverse DFT summed at each pixel
        L = 2 * max(width, n)
        from scipy.fft import next_fast_len

        L = next_fast_len(L, real=True)
        L += L % 2
        k = np.arange(L // 2 + 1)
        nu = k / L
        filt = filter_response("ramp", L) * np.sinc(nu) ** 2
        wk = np.where((k == 0) | (k == L // 2), 1.0, 2.0)
        c = np.arange(n) - (n - 1) / 2
        y, x = np.meshgrid(c, c, indexing="ij")
        ref = np.zeros((2, n, n))
        for j in range(2):
            spec = np.fft.rfft(sinos[:, j].astype(np.float64), n=L, axis=-1) * filt * wk / L
            for a in range(n_angles):
                u = x * np.cos(theta[a]) + y * np.sin(theta[a]) + center
                ref[j] += weights[a] * np.real(np.exp(2j * np.pi * u[..., None] * nu) @ spec[a])
        scale = np.abs(ref).max()
        assert np.abs(got - ref).max() < 3e-4 * scale  # two slices packed in one complex grid
        assert np.abs(one - ref[0]).max() < 3e-4 * scale  # one slice, half spectrum


@pytest.mark.parametrize("n", [61, 80])
def test_fbp_equals_plain_numpy_filter_and_interp(n):
    """FBP against zero-padded FFT filtering + numpy.interp back-projection, pixel by pixel."""
    from scipy.fft import next_fast_len

    rng = np.random.default_rng(5)
    n_angles, width, center = 97, 70, 37.8
    theta = np.sort(rng.uniform(0, np.pi, n_angles))
    sino = rng.random((n_angles, width)).astype(np.float32)
    got = reconstruct(sino, theta, center, algorithm="fbp", filter_name="hann", device="cpu", out_size=n)
    L = next_fast_len(2 * max(width, n), real=True)
    q = np.fft.irfft(np.fft.rfft(sino.astype(np.float64), n=L, axis=-1) * filter_response("hann", L), n=L)[:, :width]
    c = np.arange(n) - (n - 1) / 2
    y, x = np.meshgrid(c, c, indexing="ij")
    # documented edge rule: q falls linearly to zero over the pixel beyond each detector end
    qz = np.pad(q, ((0, 0), (1, 1)))
    weights = quadrature_weights(theta)
    ref = sum(
        weights[a]
        * np.interp(x * np.cos(t) + y * np.sin(t) + center, np.arange(-1, width + 1), qz[a], left=0.0, right=0.0)
        for a, t in enumerate(theta)
    )
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()


# ------------------------------------------------------------------ geometry and scale


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("center", [70.3, 55.0, 63.5])
def test_off_centre_square_lands_at_the_right_pixel(algorithm, center):
    width, n, n_angles = 128, 110, 360
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    x0, y0, half = 21.0, -14.0, 6.0  # pixel centres at col = x0 + (n-1)/2, row = y0 + (n-1)/2
    sino = square_sinogram(theta, width, center, x0, y0, half).astype(np.float32)
    img = reconstruct(sino, theta, center, algorithm=algorithm, device="cpu", out_size=n)
    rows, cols = np.nonzero(img > 0.5)
    assert abs(rows.mean() - (y0 + (n - 1) / 2)) < 0.2
    assert abs(cols.mean() - (x0 + (n - 1) / 2)) < 0.2
    r0, c0 = int(round(y0 + (n - 1) / 2)), int(round(x0 + (n - 1) / 2))
    inner = img[r0 - 3 : r0 + 4, c0 - 3 : c0 + 4]
    assert abs(inner.mean() - 1.0) < 0.03
    outside = img.copy()
    outside[r0 - 10 : r0 + 11, c0 - 10 : c0 + 11] = 0
    assert np.abs(outside[circle_mask(n, 4)]).max() < 0.1


def test_astra_backend_maps_onto_our_geometry():
    pytest.importorskip("astra")
    width, n, n_angles, center = 128, 110, 360, 70.3
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    x0, y0, half = 21.0, -14.0, 6.0
    sino = square_sinogram(theta, width, center, x0, y0, half).astype(np.float32)
    ours = reconstruct(sino, theta, center, algorithm="fbp", device="cpu", out_size=n)
    theirs = reconstruct(sino, theta, center, algorithm="fbp", backend="astra", device="cpu", out_size=n)
    rows, cols = np.nonzero(theirs > 0.5)
    assert abs(rows.mean() - (y0 + (n - 1) / 2)) < 0.2
    assert abs(cols.mean() - (x0 + (n - 1) / 2)) < 0.2
    assert rmse(theirs, ours, circle_mask(n, 4)) < 0.02


def test_tomopy_backend_maps_onto_our_geometry():
    pytest.importorskip("tomopy")
    width, n_angles, center = 128, 360, 66.0
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    sino = square_sinogram(theta, width, center, 21.0, -14.0, 6.0).astype(np.float32)
    ours = reconstruct(sino, theta, center, algorithm="fourier", device="cpu")
    theirs = reconstruct(sino, theta, center, algorithm="fourier", backend="tomopy", device="cpu")
    mask = circle_mask(width, 4)
    assert rmse(theirs, ours, mask) < 0.1 * np.sqrt(np.mean(ours[mask] ** 2)) + 0.02


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("filter_name", FILTERS)
def test_constant_disc_reconstructs_to_its_value(algorithm, filter_name):
    width, n_angles, value, radius = 96, 300, 0.7, 30.0
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    sino = disc_sinogram(theta, width, (width - 1) / 2, 0.0, 0.0, radius, value).astype(np.float32)
    img = reconstruct(sino, theta, algorithm=algorithm, filter_name=filter_name, device="cpu")
    c = np.arange(width) - (width - 1) / 2
    y, x = np.meshgrid(c, c, indexing="ij")
    r = np.hypot(x, y)
    assert abs(img[r < radius - 6].mean() - value) < 0.005 * value
    assert np.abs(img[(r > radius + 6) & (r < width / 2 - 2)]).max() < 0.02 * value


def test_360_degree_scan_equals_180():
    width = 64
    th180 = np.linspace(0, np.pi, 200, endpoint=False)
    th360 = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    s180 = disc_sinogram(th180, width, 31.5, 8.0, -5.0, 10.0).astype(np.float32)
    s360 = disc_sinogram(th360, width, 31.5, 8.0, -5.0, 10.0).astype(np.float32)
    for algorithm in ALGOS:
        a = reconstruct(s180, th180, algorithm=algorithm, device="cpu")
        b = reconstruct(s360, th360, algorithm=algorithm, device="cpu")
        assert rmse(a, b, circle_mask(width)) < 0.01


@pytest.mark.parametrize("algorithm", ALGOS)
def test_irregular_angles_are_weighted(algorithm):
    """Random angles (dense in one half) and a scan with both 0 and 180 degrees still give the value."""
    rng = np.random.default_rng(11)
    width, radius, value = 80, 14.0, 1.0
    theta = np.sort(np.concatenate([rng.uniform(0, np.pi / 2, 300), rng.uniform(np.pi / 2, np.pi, 100)]))
    both_ends = np.linspace(0, np.pi, 181)  # endpoint included: the first and last line coincide
    for th in (theta, both_ends):
        sino = disc_sinogram(th, width, (width - 1) / 2, 12.0, -9.0, radius, value).astype(np.float32)
        img = reconstruct(sino, th, algorithm=algorithm, device="cpu")
        c = np.arange(width) - (width - 1) / 2
        y, x = np.meshgrid(c, c, indexing="ij")
        r = np.hypot(x - 12.0, y + 9.0)
        assert abs(img[r < radius - 4].mean() - value) < 0.01 * value
        # streaks outside the disc: about 0.01 with the weights, 0.095 with pi / n_angles each
        assert np.abs(img[(r > radius + 5) & (np.hypot(x, y) < width / 2 - 2)]).mean() < 0.03
    assert algorithms._angle_weights(np.linspace(0, 2 * np.pi, 400, endpoint=False)) is None
    w = algorithms._angle_weights(theta)
    assert w.sum() == pytest.approx(np.pi) and w.min() >= 0


# ---------------------------------------------------------------------------- filters


@pytest.mark.parametrize("filter_name", FILTERS)
def test_filter_response_matches_analytic_formula(filter_name):
    n_pad = 2048
    nu = np.arange(n_pad // 2 + 1) / n_pad
    analytic = {
        "ramp": nu,
        "shepp": nu * np.sin(np.pi * nu) / np.where(nu > 0, np.pi * nu, 1.0),
        "cosine": nu * np.cos(np.pi * nu),
        "hann": nu * 0.5 * (1 + np.cos(2 * np.pi * nu)),
        "parzen": nu
        * np.where(2 * nu <= 0.5, 1 - 6 * (2 * nu) ** 2 + 6 * (2 * nu) ** 3, 2 * (1 - 2 * nu) ** 3),
    }[filter_name]
    got = filter_response(filter_name, n_pad)
    # the band-limited ramp of a finite detector differs from |nu| by O(1 / (pi^2 L)) near DC only
    assert np.abs(got - analytic).max() < 2e-4
    assert got[0] >= 0 and got[0] < 1e-3


def test_filter_noise_follows_the_window_energy():
    """White detector noise: reconstruction variance / ramp's = integral nu^2 W^2 / integral nu^2."""
    rng = np.random.default_rng(7)
    width, n_angles = 256, 400
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    noise = rng.normal(size=(n_angles, width)).astype(np.float32)
    mask = circle_mask(width, 20)
    nu = np.linspace(0, 0.5, 20001)
    windows = {
        "ramp": np.ones_like(nu),
        "shepp": np.sinc(nu),
        "cosine": np.cos(np.pi * nu),
        "hann": 0.5 * (1 + np.cos(2 * np.pi * nu)),
        "parzen": np.where(2 * nu <= 0.5, 1 - 6 * (2 * nu) ** 2 + 6 * (2 * nu) ** 3, 2 * (1 - 2 * nu) ** 3),
    }
    # the fourier path also applies sinc^2 (linear-interpolation response), common to all filters
    energy = {k: np.trapezoid((nu * w * np.sinc(nu) ** 2) ** 2, nu) for k, w in windows.items()}
    var = {k: float(np.var(reconstruct(noise, theta, algorithm="fourier", filter_name=k, device="cpu")[mask])) for k in FILTERS}
    for k in FILTERS:
        assert var[k] / var["ramp"] == pytest.approx(energy[k] / energy["ramp"], rel=0.08), k
    assert sorted(FILTERS, key=var.get) == sorted(FILTERS, key=energy.get)
    assert max(var, key=var.get) == "ramp"


# --------------------------------------------------------------------- second implementations


def test_fourier_fbp_and_skimage_iradon_agree():
    from skimage.transform import iradon

    n = 129  # odd: scikit-image's centre n // 2 coincides with ours (n - 1) / 2
    theta = np.linspace(0, np.pi, 360, endpoint=False)
    sino = shepp_logan_sinogram(n, theta).astype(np.float32)
    mask = circle_mask(n, 2)
    fourier = reconstruct(sino, theta, algorithm="fourier", device="cpu")
    fbp = reconstruct(sino, theta, algorithm="fbp", device="cpu")
    # scikit-image: s = x cos(t) - y sin(t) with row-down y, i.e. our geometry at -theta
    sk = iradon(sino.T.astype(np.float64), theta=np.rad2deg(-theta), filter_name="ramp", circle=True)
    scale = np.sqrt(np.mean(sk[mask] ** 2))
    assert rmse(fbp, sk, mask) < 1e-4 * scale
    # the direct Fourier method interpolates band-limited (no linear-interpolation aliasing):
    # it differs at the phantom's sharp edges only
    assert rmse(fourier, sk, mask) < 0.08 * scale
    assert rmse(fourier, fbp, mask) < 0.08 * scale


def gaussian_blobs_sinogram(theta, width, center, blobs):
    """Exact projections of 2-D Gaussians (amplitude, x0, y0, sigma): Gaussians of the same sigma."""
    s = np.arange(width) - center
    out = np.zeros((theta.size, width))
    for amp, x0, y0, sg in blobs:
        s0 = x0 * np.cos(theta) + y0 * np.sin(theta)
        out += amp * np.sqrt(2 * np.pi) * sg * np.exp(-((s[None] - s0[:, None]) ** 2) / (2 * sg**2))
    return out


@pytest.mark.parametrize("n", [128, 129])
def test_smooth_object_both_algorithms_agree_with_truth(n):
    blobs = [(1.0, 10.0, -20.0, 3.0), (0.5, -25.0, 5.0, 5.0), (0.8, 0.0, 30.0, 4.0)]
    theta = np.linspace(0, np.pi, 400, endpoint=False)
    center = (n - 1) / 2 + 3.3
    sino = gaussian_blobs_sinogram(theta, n, center, blobs).astype(np.float32)
    c = np.arange(n) - (n - 1) / 2
    y, x = np.meshgrid(c, c, indexing="ij")
    truth = sum(a * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sg**2)) for a, x0, y0, sg in blobs)
    mask = circle_mask(n, 4)
    got = {alg: reconstruct(sino, theta, center, algorithm=alg, device="cpu") for alg in ALGOS}
    for alg in ALGOS:
        assert rmse(got[alg], truth, mask) < 0.002, alg
        assert np.abs(got[alg] - truth)[mask].max() < 0.02, alg
    assert rmse(got["fourier"], got["fbp"], mask) < 0.002


# ------------------------------------------------------------------------ stacks and errors


@pytest.mark.parametrize("algorithm", ALGOS)
def test_stack_equals_slice_by_slice_with_per_slice_centres(algorithm):
    rng = np.random.default_rng(3)
    theta = np.linspace(0, np.pi, 120, endpoint=False)
    width, centers = 80, [38.0, 40.7, 41.5]
    sinos = np.stack(
        [disc_sinogram(theta, width, c, rng.uniform(-15, 15), rng.uniform(-15, 15), 8.0) for c in centers], axis=1
    ).astype(np.float32)
    stack = reconstruct(sinos, theta, centers, algorithm=algorithm, device="cpu")
    assert stack.shape == (3, width, width) and stack.dtype == np.float32
    for i, c in enumerate(centers):
        one = reconstruct(sinos[:, i], theta, c, algorithm=algorithm, device="cpu")
        np.testing.assert_allclose(stack[i], one, atol=1e-4 * np.abs(one).max())
    same = reconstruct(sinos[:, :2], theta, 40.0, algorithm=algorithm, device="cpu")
    np.testing.assert_allclose(same[1], reconstruct(sinos[:, 1], theta, 40.0, algorithm=algorithm, device="cpu"), atol=1e-4)


def test_out_size_and_dtype():
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    sino = disc_sinogram(theta, 50, 24.5, 0, 0, 10).astype(np.float64)
    for algorithm in ALGOS:
        img = reconstruct(sino, theta, algorithm=algorithm, out_size=33, device="cpu")
        assert img.shape == (33, 33) and img.dtype == np.float32
        c = np.arange(33) - 16
        r = np.hypot(*np.meshgrid(c, c, indexing="ij"))
        assert img[r < 6].mean() == pytest.approx(1.0, abs=0.01)
        assert np.abs(img[(r > 13) & (r < 16)]).max() < 0.05


def test_tiny_inputs_give_finite_slices():
    theta = np.linspace(0, np.pi, 7, endpoint=False)
    for width, n in [(2, 2), (3, 3), (5, 1), (4, 9)]:
        for algorithm in ALGOS:
            img = reconstruct(np.ones((7, width), np.float32), theta, algorithm=algorithm, out_size=n, device="cpu")
            assert img.shape == (n, n) and np.isfinite(img).all() and np.abs(img).max() > 0



def test_kernels_stay_in_bounds_with_numba_boundscheck(tmp_path):
    """Tiny and odd geometries under NUMBA_BOUNDSCHECK=1: an out-of-bounds write in a
    kernel raises IndexError there instead of silently corrupting the heap."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from recon.algorithms import reconstruct\n"
        "for n_ang in (7, 64):\n"
        "    theta = np.linspace(0, np.pi, n_ang, endpoint=False)\n"
        "    for width, n in [(2, 2), (3, 3), (5, 1), (4, 9), (33, 33), (40, 17)]:\n"
        "        for alg in ('fourier', 'fbp'):\n"
        "            for slices in (1, 3):\n"
        "                s = np.random.default_rng(0).random((n_ang, slices, width), dtype=np.float32)\n"
        "                reconstruct(s, theta, algorithm=alg, out_size=n, device='cpu')\n"
        "print('ok')\n"
    )
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]

@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"algorithm": "art"}, "algorithm must be one of"),
        ({"filter_name": "butterworth"}, "filter_name must be one of"),
        ({"backend": "scikit"}, "backend must be one of"),
        ({"device": "tpu"}, "device must be one of"),
        ({"center": 70.0}, "outside the detector"),
        ({"center": -0.5}, "outside the detector"),
        ({"center": [10.0, 11.0]}, "one per slice"),
        ({"out_size": 0}, "out_size"),
        ({"out_size": 10.5}, "out_size"),
    ],
)
def test_bad_options_raise_input_error(kwargs, match):
    theta = np.linspace(0, np.pi, 30, endpoint=False)
    sino = np.ones((30, 40), np.float32)
    with pytest.raises(InputError, match=match):
        reconstruct(sino, theta, **kwargs)


def test_bad_arrays_raise_input_error():
    theta = np.linspace(0, np.pi, 30, endpoint=False)
    sino = np.ones((30, 40), np.float32)
    with pytest.raises(InputError, match="theta_rad has 29 angles"):
        reconstruct(sino, theta[:-1])
    bad = sino.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        reconstruct(bad, theta)
    bad[3, 4] = np.inf
    with pytest.raises(InputError, match="NaN or inf"):
        reconstruct(bad, theta)
    with pytest.raises(InputError, match="shape"):
        reconstruct(np.ones(40, np.float32), theta)
    with pytest.raises(InputError, match="theta_rad contains NaN"):
        reconstruct(sino, np.full(30, np.nan))


def test_missing_backend_raises_input_error():
    try:
        import tomopy  # noqa: F401
    except Exception:
        theta = np.linspace(0, np.pi, 30, endpoint=False)
        with pytest.raises(InputError, match="tomopy"):
            reconstruct(np.ones((30, 40), np.float32), theta, backend="tomopy")
    else:
        pytest.skip("tomopy is installed")


def test_docstring_example_runs():
    result = doctest.testmod(algorithms, verbose=False)
    assert result.attempted > 0 and result.failed == 0

"""Local current distribution against classical analytic solutions."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import segment
from segment import InputError, current_distribution, stripping_with_current
from segment import current as current_mod
from segment.stripping import synthetic_thickness_map


def _disk(n, r0):
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(y, x)
    return r, r <= r0


def test_disk_on_insulating_plane_matches_the_classical_primary_distribution():
    """j(r) = j_avg / (2 sqrt(1 - (r/r0)^2)) for r <= 0.8 r0 (large periodic cell, thick SSE)."""
    n, r0 = 256, 24
    r, act = _disk(n, r0)
    res = current_distribution(act, 1.0, 20.0 * n)
    assert res.converged and res.iterations < 50
    j = res.current_rel
    rr = r[act] / r0
    jj = j[act] / j[act].mean()
    edges = np.linspace(0.0, 0.8, 9)
    idx = np.digitize(rr, edges)
    for b in range(1, edges.size):
        sel = idx == b
        theory = 1.0 / (2.0 * np.sqrt(1.0 - rr[sel].mean() ** 2))
        assert jj[sel].mean() == pytest.approx(theory, rel=0.05)
    assert np.all(j[~act] == 0)
    assert res.mean_active_rel == pytest.approx(1.0 / res.active_fraction)


def test_fully_active_interface_carries_a_uniform_current():
    res = current_distribution(np.ones((48, 64), bool), 2.0, 30.0)
    np.testing.assert_allclose(res.current_rel, 1.0, atol=1e-9)
    # areal resistance of a uniform slab: L / sigma
    assert res.resistance_ohm_cm2 == pytest.approx(30e-4 / 1e-3, rel=1e-9)


def _stripes(period_px, fraction, n_periods, rows=8):
    x = np.arange(period_px * n_periods)
    act = ((x % period_px) + 0.5) < fraction * period_px
    return np.broadcast_to(act, (rows, x.size)).copy()


@pytest.mark.parametrize("period_px, fraction", [(256, 0.5), (240, 0.25)])
def test_stripes_total_current_matches_conformal_map_resistance(period_px, fraction):
    """Periodic strip contacts: areal resistance (L + (p/pi) ln(1/sin(pi f/2))) / sigma.

    The extra length is the constriction (access) resistance of strips of width f p on an
    insulating plane, from the conformal map of a half-period cell; at a fixed applied
    current the total current through the contacts must then be the applied one to 0.1 %.
    """
    h_um, sigma = 1.0, 2e-3
    act = _stripes(period_px, fraction, 2)
    length_um = 2.0 * period_px * h_um  # counter electrode far: exp(-4 pi) correction
    res = current_distribution(act, h_um, length_um, conductivity_s_cm=sigma, applied_current_density_ma_cm2=1.0)
    extra_um = period_px * h_um / np.pi * np.log(1.0 / np.sin(np.pi * fraction / 2))
    r_theory = (length_um + extra_um) * 1e-4 / sigma
    # total current at the voltage the model needs for 1 mA cm^-2, from the analytic resistance
    total_theory = res.voltage_v / r_theory * 1e3  # mA cm^-2
    assert total_theory == pytest.approx(1.0, rel=1e-3)
    # the absolute map integrates to the applied current
    assert np.nanmean(res.current_ma_cm2) == pytest.approx(1.0, rel=1e-12)


def test_stripe_current_peaks_at_the_edges_and_follows_the_analytic_profile():
    p, f = 128, 0.5
    act = _stripes(p, f, 2)
    res = current_distribution(act, 1.0, 2.0 * p)
    prof = res.current_rel[0]
    x = np.arange(prof.size)
    edges = {0, int(f * p) - 1, p, p + int(f * p) - 1}
    top = set(np.argsort(prof)[-4:].tolist())
    assert top == edges
    assert res.max_index[1] in edges
    # interior of a strip: j ~ cos(pi x/p) / sqrt(sin^2(pi a/p) - sin^2(pi x/p)), x from the centre
    a = f * p / 2
    xc = (x % p) + 0.5 - a
    inside = np.abs(xc) < 0.7 * a
    theory = np.cos(np.pi * xc[inside] / p) / np.sqrt(np.sin(np.pi * a / p) ** 2 - np.sin(np.pi * xc[inside] / p) ** 2)
    got = prof[inside]
    theory *= got.mean() / theory.mean()
    np.testing.assert_allclose(got, theory, rtol=0.03)


def test_secondary_distribution_tends_to_uniform_with_interfacial_resistance():
    act = _stripes(64, 0.4, 2, rows=4)
    f = act.mean()
    spreads = []
    for rct in (0.0, 1.0, 10.0, 100.0, 1e4):
        res = current_distribution(
            act, 1.0, 100.0, kinetics={"charge_transfer_resistance_ohm_cm2": rct, "conductivity_s_cm": 1e-3}
        )
        vals = res.current_rel[act]
        spreads.append(vals.max() / vals.min() - 1)
        assert res.converged
    assert all(a > b for a, b in zip(spreads, spreads[1:]))
    assert spreads[-1] < 1e-4
    # uniform limit: all the current through the contacts, j = 1 / f
    np.testing.assert_allclose(res.current_rel[act], 1 / f, rtol=1e-4)


def test_exchange_current_density_gives_rt_over_f_resistance():
    # R T / F at 25 C is 25.69 mV: 1 mA cm^-2 exchange current -> 25.69 Ohm cm^2
    assert current_mod.charge_transfer_resistance(1.0) == pytest.approx(25.693, rel=1e-4)
    act = np.ones((16, 16), bool)
    res = current_distribution(act, 1.0, 10.0, kinetics={"exchange_current_density_ma_cm2": 2.0})
    assert res.charge_transfer_resistance_ohm_cm2 == pytest.approx(25.693 / 2, rel=1e-4)
    assert res.resistance_ohm_cm2 == pytest.approx(10e-4 / 1e-3 + 25.693 / 2, rel=1e-4)


def test_threshold_area_fraction_and_electrode_mask():
    r, act = _disk(96, 20)
    elec = np.ones(act.shape, bool)
    elec[:, :10] = False
    res = current_distribution(act, 1.0, 500.0, electrode_mask=elec, threshold_rel=4.0)
    assert np.all(np.isnan(res.current_rel[:, :10]))
    vals = res.current_rel[act]
    assert res.area_fraction_above == pytest.approx(np.count_nonzero(vals > 4.0) / elec.sum())
    assert res.fraction_above(4.0) == pytest.approx(res.area_fraction_above)
    assert np.nansum(res.current_rel) == pytest.approx(elec.sum(), rel=1e-9)


def test_stripping_with_current_reports_the_first_exceedance():
    t = synthetic_thickness_map((96, 96), 4.0, correlation_um=40.0, seed=2)
    out = stripping_with_current(
        t, 4.0, 40.0, fractions=(0.5, 0.85), current_density_ma_cm2=0.5,
        critical_current_density_ma_cm2=1.5, search_points=8, bisections=4,
    )
    assert out.threshold_rel == pytest.approx(3.0)
    for f, c in zip(out.fractions, out.currents):
        snap = out.stripping.snapshot(f)
        assert c.active_fraction == pytest.approx(snap.mean())
        assert np.all(c.current_rel[~snap] == 0)
    first = out.first_exceed
    assert first is not None
    # every scanned fraction below the reported one stays under the threshold
    for f, peak in out.scanned:
        if f < first["stripped_fraction"]:
            assert peak <= out.threshold_rel
    assert first["max_rel"] > out.threshold_rel
    snap = out.stripping.snapshot(first["stripped_fraction"])
    assert snap[tuple(first["yx_px"])]  # the peak sits on remaining lithium
    assert first["time_h"] == pytest.approx(first["stripped_fraction"] * out.stripping.capacity_mah_cm2 / 0.5)
    summary = out.summary()
    assert len(summary["fractions"]) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"active_mask": np.zeros((8, 8), bool)}, "no active pixel"),
        ({"active_mask": np.ones((8, 8))}, "boolean"),
        ({"active_mask": np.ones((2, 8, 8), bool)}, "2-D"),
        ({"electrolyte_thickness_um": -1.0}, "electrolyte_thickness_um"),
        ({"kinetics": {"bogus": 1}}, "unknown kinetics"),
        ({"kinetics": {"exchange_current_density_ma_cm2": 0.0}}, "exchange current"),
        ({"conductivity_s_cm": 0.0}, "conductivity"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"active_mask": np.ones((8, 8), bool), "pixel_size_um": 1.0, "electrolyte_thickness_um": 10.0}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        current_distribution(args.pop("active_mask"), args.pop("pixel_size_um"), args.pop("electrolyte_thickness_um"), **args)


def test_stripping_with_current_bad_fraction():
    with pytest.raises(InputError, match="fraction"):
        stripping_with_current(np.ones((8, 8)), 1.0, 10.0, fractions=(0.5, 1.0))


def test_docstring_examples_and_api():
    failed, _ = doctest.testmod(current_mod)
    assert failed == 0
    assert segment.current_distribution is current_distribution
    assert segment.CurrentResult is current_mod.CurrentResult


@pytest.mark.gpu
def test_gpu_matches_cpu():
    import cupy as cp

    r, act = _disk(128, 20)
    cpu = current_distribution(act, 1.0, 300.0, kinetics={"charge_transfer_resistance_ohm_cm2": 0.5})
    gpu = current_distribution(cp.asarray(act), 1.0, 300.0, kinetics={"charge_transfer_resistance_ohm_cm2": 0.5})
    assert isinstance(gpu.current_rel, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(gpu.current_rel), cpu.current_rel, rtol=1e-6, atol=1e-9)
    host = current_distribution(act, 1.0, 300.0, device="gpu")
    assert isinstance(host.current_rel, np.ndarray)
    assert host.max_rel == pytest.approx(current_distribution(act, 1.0, 300.0).max_rel, rel=1e-6)


def test_mirror_boundary_quarter_disk_in_a_corner():
    """Mirror (no-flux) map edges: a quarter disk in a corner carries the full-disk distribution."""
    n, r0 = 128, 24
    y, x = np.mgrid[:n, :n] + 0.5
    r = np.hypot(y, x)
    act = r <= r0
    res = current_distribution(act, 1.0, 40.0 * n, lateral_boundary="mirror")
    rr = r[act] / r0
    jj = res.current_rel[act] / res.current_rel[act].mean()
    edges = np.linspace(0.0, 0.8, 9)
    idx = np.digitize(rr, edges)
    for b in range(2, edges.size):  # the first ring holds too few pixels in a quarter
        sel = idx == b
        theory = 1.0 / (2.0 * np.sqrt(1.0 - rr[sel].mean() ** 2))
        assert jj[sel].mean() == pytest.approx(theory, rel=0.05)
    periodic = current_distribution(act, 1.0, 40.0 * n)
    # without the mirror, the periodic images of the quarter disk sit at the far corners
    assert not np.allclose(periodic.current_rel, res.current_rel, rtol=1e-3)


def test_gpu_request_without_gpu_is_a_user_error():
    from segment._backend import gpu_available

    if gpu_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(InputError, match="gpu"):
        current_distribution(np.ones((8, 8), bool), 1.0, 10.0, device="gpu")

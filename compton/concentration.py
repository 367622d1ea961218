"""EMF -> lithium content: a linear calibration from reference samples, applied to maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._errors import InputError


@dataclass
class EmfCalibration:
    """Linear calibration ``EMF = intercept + slope * x`` (x: Li per formula unit).

    Attributes
    ----------
    intercept, slope : float
        Fitted line (EMF units, EMF per unit x).
    cov : ndarray [2, 2]
        Covariance of (intercept, slope).
    r2 : float
        Coefficient of determination of the fit.
    """

    intercept: float
    slope: float
    cov: np.ndarray
    r2: float

    def concentration(self, emf, sigma_emf=None):
        """Li content x (and its one-sigma uncertainty) from EMF values or maps.

        The uncertainty combines the EMF uncertainty and the calibration covariance:
        ``x = (EMF - a) / b``, ``var x = (var EMF + var a + 2 x cov(a,b) + x^2 var b) / b^2``.
        """
        e = np.asarray(emf, np.float64)
        x = (e - self.intercept) / self.slope
        ve = 0.0 if sigma_emf is None else np.asarray(sigma_emf, np.float64) ** 2
        var = (ve + self.cov[0, 0] + 2 * x * self.cov[0, 1] + x * x * self.cov[1, 1]) / self.slope**2
        return x, np.sqrt(np.clip(var, 0, None))


def fit_emf_calibration(x, emf, *, sigma_emf=None) -> EmfCalibration:
    """Fit ``EMF = a + b x`` to reference measurements (weighted when ``sigma_emf`` is given).

    Parameters
    ----------
    x : array_like
        Known Li content of the references (e.g. from ICP-OES), per formula unit.
    emf : array_like
        Their measured EMF.
    sigma_emf : array_like, optional
        One-sigma EMF uncertainties; without them the covariance is scaled by the residuals.

    Examples
    --------
    >>> cal = fit_emf_calibration([0.2, 0.6, 1.0], [1.1, 1.3, 1.5])
    >>> round(cal.slope, 6), round(cal.intercept, 6)
    (0.5, 1.0)
    """
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(emf, np.float64).ravel()
    if x.shape != y.shape or x.size < 2 or np.ptp(x) == 0:
        raise InputError(f"fit_emf_calibration: need >= 2 references with different x, got x={x}, emf={y}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError("fit_emf_calibration: x and emf must be finite")
    a = np.stack([np.ones_like(x), x], axis=1)
    if sigma_emf is None:
        w = np.ones_like(x)
    else:
        s = np.asarray(sigma_emf, np.float64).ravel()
        if s.shape != x.shape or np.any(~(s > 0)):
            raise InputError("fit_emf_calibration: sigma_emf must be positive, one per reference")
        w = 1.0 / s**2
    ata = a.T @ (a * w[:, None])
    beta = np.linalg.solve(ata, a.T @ (w * y))
    resid = y - a @ beta
    cov = np.linalg.inv(ata)
    if sigma_emf is None:
        dof = max(x.size - 2, 1)
        cov = cov * (resid @ resid) / dof
    ss_tot = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(resid**2) / ss_tot if ss_tot > 0 else 1.0
    return EmfCalibration(intercept=float(beta[0]), slope=float(beta[1]), cov=cov, r2=float(r2))

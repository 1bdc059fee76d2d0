"""The predictive distribution of an ensemble: a mixture of censored Gaussians, in numpy.

Each member predicts a latent Gaussian ``Z ~ N(mu, sd^2)``; the flux it predicts is
``Y = max(bound, Z)`` (a censored, Tobit, Gaussian), so no value, quantile or mean lies below
the physical bound of the variable, and a day at the bound (winter GPP) is a point mass there.
With ``bound`` None (or -inf) a member is the plain Gaussian. The ensemble's distribution is
the equal-weight mixture of its members; its quantiles solve the mixture's CDF, its mean and
variance are the mixture's exactly.

Arrays of members have the members first: ``mu``, ``sd`` are [N, ...].
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

# Newton steps of the quantile solve; each one at least halves the bracket, and Newton converges
# in a few steps from the Gaussian start, so the error is far below float32 resolution.
QUANTILE_STEPS = 40
QUANTILE_TOL = 1e-7  # in probability


def _bound(bound) -> float:
    return -np.inf if bound is None else float(bound)


def _pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) * (1.0 / np.sqrt(2.0 * np.pi))


def censored_moments(mu: np.ndarray, sd: np.ndarray, bound: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``max(bound, Z)`` with ``Z ~ N(mu, sd^2)``, elementwise.

    Parameters
    ----------
    mu, sd : numpy.ndarray
        Latent mean and standard deviation (sd > 0).
    bound : float or None
        The lower bound; None: the moments of Z itself.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``E[Y] = b Phi(a) + mu (1 - Phi(a)) + sd phi(a)`` with ``a = (b - mu) / sd``, and
        ``Var[Y] = E[Y^2] - E[Y]^2`` with ``E[Y^2] = b^2 Phi(a) + (mu^2 + sd^2)(1 - Phi(a)) + sd (mu + b) phi(a)``.
    """
    mu, sd = np.asarray(mu, "float64"), np.asarray(sd, "float64")
    b = _bound(bound)
    if not np.isfinite(b):
        return mu, sd * sd
    # in units of sd above the bound, Y = b + sd W with W = max(0, X + z), X standard normal: the
    # same moments as the formulas above in fewer array passes (the apply's host-side hot spot)
    z = (mu - b) / sd
    above, density = ndtr(z), _pdf(z)
    mean_w = z * above + density
    var_w = np.maximum((z * z + 1.0) * above + z * density - mean_w * mean_w, 0.0)
    mean, var = np.maximum(b + sd * mean_w, b), sd * sd * var_w  # the maximum: rounding far below the bound
    point = np.isinf(z)  # sd 0 (a point mass at mu), off the bound: sd * inf above would give NaN
    if point.any():
        mean, var = np.where(point, np.maximum(mu, b), mean), np.where(point, 0.0, var)
    return mean, var


def mixture_cdf(x: np.ndarray, mu: np.ndarray, sd: np.ndarray, bound: float | None) -> np.ndarray:
    """``P(Y <= x)`` of the equal-weight mixture of censored Gaussians (0 below the bound).

    Parameters
    ----------
    x : numpy.ndarray
        Values [...] (broadcast against the members' trailing axes).
    mu, sd : numpy.ndarray
        [N, ...] latent means and standard deviations of the members.
    bound : float or None
        The lower bound of Y.
    """
    x = np.asarray(x, "float64")
    cdf = ndtr((x[None] - mu) / sd).mean(axis=0)
    return np.where(x < _bound(bound), 0.0, cdf)


def mixture_quantiles(levels, mu: np.ndarray, sd: np.ndarray, bound: float | None) -> np.ndarray:
    """Quantiles of the mixture: the least ``x >= bound`` with ``P(Y <= x) >= level``.

    Solved by safeguarded Newton steps on the mixture's CDF (bisection whenever a step leaves
    the bracket), vectorised over the elements not yet converged; not a Gaussian approximation.

    Parameters
    ----------
    levels : sequence of float
        Probabilities in (0, 1).
    mu, sd : numpy.ndarray
        [N, ...] latent means and standard deviations (NaN propagates).
    bound : float or None
        The lower bound: where the point mass at it reaches ``level``, the quantile is the bound.

    Returns
    -------
    numpy.ndarray
        float64 [L, ...].
    """
    shape = np.shape(mu)[1:]
    mu = np.asarray(mu, "float64").reshape(np.shape(mu)[0], -1)
    sd = np.asarray(sd, "float64").reshape(mu.shape)
    b = _bound(bound)
    mass = ndtr((b - mu) / sd).mean(axis=0) if np.isfinite(b) else np.zeros(mu.shape[1])
    mean = mu.mean(axis=0)
    spread = np.sqrt(np.maximum((sd * sd + mu * mu).mean(axis=0) - mean**2, 0.0))
    low, high = (mu - 9.0 * sd).min(axis=0), (mu + 9.0 * sd).max(axis=0)
    out = np.empty((len(levels), mu.shape[1]))
    for i, level in enumerate(levels):
        x = np.clip(mean + spread * _normal_ppf(level), low, high)
        solve = (mass < level) & np.isfinite(x)  # elsewhere the quantile is the bound (or NaN)
        x[solve] = _newton(level, x[solve], low[solve], high[solve], mu[:, solve], sd[:, solve])
        out[i] = np.where(mass >= level, b, np.maximum(x, b))
    return out.reshape(len(levels), *shape)


def _newton(level: float, x, lo, hi, mu, sd) -> np.ndarray:
    """Solve mean_i Phi((x - mu_i) / sd_i) = level for each column, on the bracket [lo, hi]."""
    x, lo, hi = x.copy(), lo.copy(), hi.copy()
    active = np.arange(x.size)
    for _ in range(QUANTILE_STEPS):
        if not active.size:
            break
        xa, m, s = x[active], mu[:, active], sd[:, active]
        z = (xa[None] - m) / s
        err = ndtr(z).mean(axis=0) - level
        lo[active] = np.where(err < 0, xa, lo[active])
        hi[active] = np.where(err < 0, hi[active], xa)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            step = xa - err / (_pdf(z) / s).mean(axis=0)
        la, ha = lo[active], hi[active]
        done = np.abs(err) <= QUANTILE_TOL
        x[active] = np.where(done, xa, np.where((step > la) & (step < ha), step, 0.5 * (la + ha)))
        active = active[~done]
    return x


def _normal_ppf(level: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(level))


def mixture_pit(obs: np.ndarray, mu: np.ndarray, sd: np.ndarray, bound: float | None) -> np.ndarray:
    """The probability integral transform ``F(max(obs, bound))`` of observations under the mixture.

    An observation at or below the bound is censored: its PIT is uniform on [0, F(bound)] (the
    non-randomised PIT of Czado et al. 2009), and the value returned is that upper end. Above the
    bound it is the PIT itself. :func:`pit_coverage` scores intervals from it.
    """
    obs = np.asarray(obs, "float64")
    b = _bound(bound)
    return mixture_cdf(np.maximum(obs, b) if np.isfinite(b) else obs, mu, sd, bound)


def pit_coverage(pit: np.ndarray, censored: np.ndarray, low: float, high: float) -> np.ndarray:
    """Per observation, the probability that its PIT lies in [low, high] (1 or 0 unless censored).

    Parameters
    ----------
    pit : numpy.ndarray
        :func:`mixture_pit` of the observations.
    censored : numpy.ndarray
        bool, the observation is at or below the bound: its PIT is uniform on [0, pit].
    low, high : float
        The interval of probability, e.g. 0.05 and 0.95 for the central 90 % interval, or 0 and
        0.05 for "at most the 5 % quantile".
    """
    pit = np.asarray(pit, "float64")
    inside = ((pit >= low) & (pit <= high)).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (np.clip(pit, low, high) - low) / pit  # of U(0, pit): the part in [low, high]
    share = np.where(pit > 0, np.minimum(share, 1.0), float(low <= 0.0))
    return np.where(censored, share, inside)

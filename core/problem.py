"""From a resolved config to the :class:`core.components.Problem` a run starts from.

Every random choice flows from the config's seed through :func:`seed_streams`: one
independent stream for the data, one for the initialisation and one for the
algorithm, so changing e.g. the initialisation never changes the data. A config's
``data_seed``, when set, seeds the data stream instead (runs that differ only in
``seed`` then share their data set).
"""

import numpy as np

from .components import Problem
from .errors import ConfigError

__all__ = ["seed_streams", "build_problem", "problem_from_arrays"]


def seed_streams(seed):
    """Independent generators for data, init and algorithm, all from ``seed``.

    Examples
    --------
    >>> a, _, _ = seed_streams(0)
    >>> b, _, _ = seed_streams(0)
    >>> float(a.random()) == float(b.random())
    True
    """
    data_ss, init_ss, algo_ss = np.random.SeedSequence(seed).spawn(3)
    return (
        np.random.default_rng(data_ss),
        np.random.default_rng(init_ss),
        np.random.default_rng(algo_ss),
    )


def build_problem(config, registry, arrays=None):
    """Build the :class:`Problem` of a resolved config.

    Parameters
    ----------
    config : dict
        Resolved config.
    registry : core.registry.Registry
        Provides the data and init plugins; handed to the algorithm as
        ``problem.registry``.
    arrays : dict, optional
        Saved ``problem.npz`` arrays (on resume): used instead of regenerating.

    Returns
    -------
    problem : Problem
    arrays : dict of ndarray
        What to store in ``problem.npz``.

    Raises
    ------
    ConfigError
        The data set produced no points or inputs without features.
    """
    rng_data, rng_init, rng_algo = seed_streams(config["seed"])
    if config.get("data_seed") is not None:
        rng_data = seed_streams(config["data_seed"])[0]
    data_cfg = dict(config["data"])
    data_name = data_cfg.pop("name")
    data_cls = registry.get("data", data_name)
    bias = bool(getattr(data_cls, "bias_column", False)) or bool(data_cfg.get("bias", False))
    if arrays is None:
        data = data_cls(**data_cfg).load(rng_data)
        _check_inputs(data.X, data.Y, data_name)
        bias = data.bias
        init_cfg = dict(config["init"])
        init = registry.get("init", init_cfg.pop("name"))(**init_cfg)
        k = 1 if data.Y.ndim == 1 else data.Y.shape[1]
        W0, a0 = init.initialize(data.X.shape[1], config["model"]["width"], k, rng_init)
        if data.Y.ndim == 2 and a0.ndim == 1:
            a0 = a0[:, None]
        arrays = {**data.arrays(), "W0": W0, "a0": a0, "bias": np.array(bias)}
    problem = problem_from_arrays(
        config, arrays, rng_algo, registry, bias=bool(arrays.get("bias", bias))
    )
    return problem, arrays


def problem_from_arrays(config, arrays, rng, registry=None, bias=None):
    """The :class:`Problem` of a resolved config and its ``problem.npz`` arrays.

    Parameters
    ----------
    config : dict
        Resolved config (model scaling and loss, seed).
    arrays : dict of ndarray
        ``X, Y, W0, a0`` and optionally ``X_test, Y_test``, ``bias`` and
        ``extra.<name>`` arrays.
    rng : numpy.random.Generator
        The algorithm's random stream.
    registry : core.registry.Registry, optional
    bias : bool, optional
        Default: the ``bias`` array, else False.
    """
    if bias is None:
        bias = bool(arrays.get("bias", False))
    return Problem(
        X=arrays["X"],
        Y=arrays["Y"],
        W0=arrays["W0"],
        a0=arrays["a0"],
        scaling=config["model"]["scaling"],
        loss=config["model"]["loss"],
        bias=bias,
        seed=config["seed"],
        rng=rng,
        X_test=arrays.get("X_test"),
        Y_test=arrays.get("Y_test"),
        extras={k[len("extra.") :]: v for k, v in arrays.items() if k.startswith("extra.")},
        registry=registry,
    )


def _check_inputs(X, Y, name):
    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ConfigError(
            f"data ({name}) gave inputs X of shape {X.shape}; a data set needs at least one "
            "point and one feature (X of shape (n, d), n >= 1, d >= 1)"
        )
    if Y.shape[:1] != X.shape[:1]:
        raise ConfigError(
            f"data ({name}) gave {X.shape[0]} inputs but targets Y of shape {Y.shape}"
        )

"""Contracts of the pieces plugins provide.

Every piece is a class with a ``name`` (unique within its ``kind``), a one-line
``doc`` (the class docstring's first line by default), declared ``params`` and,
when it needs an optional extra, ``requires`` (importable module names) and
``extra`` (the ``relulab[extra]`` that installs them). Plugins return such classes
from the hooks in :mod:`core.hookspecs`; the run loop builds them from their config
section: ``cls(**validated_params)``. ``__init__`` only stores parameters (as
scikit-learn estimators do); work happens in ``setup``.

Kinds
-----
data        :class:`DataSet`   -> ``load(rng)`` returns a :class:`Data`
init        :class:`Init`      -> ``initialize(d, m, k, rng)`` returns ``(W0, a0)``
algorithm   :class:`Algorithm` -> ``setup(problem)``, ``step()``, ``state()``...
stopper     :class:`Stopper`   -> ``should_stop(ctx)`` returns a reason or None
logger      :class:`Logger`    -> ``observe(ctx)`` appends rows to the trace
saver       :class:`Saver`     -> ``should_save(ctx)`` says when to make data durable
metric      :class:`Metric`    -> ``compute(algorithm, problem)`` returns scalars
plot        :class:`Plot`      -> ``applies(run)``, ``draw(run)`` returns figures
indicator   :class:`Indicator` -> ``summary(run)`` and ``per_snapshot(run, W, a)``
prox        :class:`Prox`      -> a proximal solver an algorithm selects by name
distance    :class:`Distance`  -> ``value(W, W_prev, a)``: a proximal step's distance
solver      :class:`Solver`    -> a steppable solver of a convex program
optimizer   :class:`Optimizer` -> ``create(params, lr)``: an update rule on named tensors
schedule    :class:`Schedule`  -> ``create()``: a learning-rate factor over steps
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Component",
    "Data",
    "Problem",
    "DataSet",
    "Init",
    "Algorithm",
    "Stopper",
    "Logger",
    "Saver",
    "Metric",
    "Plot",
    "Indicator",
    "SweepAnalysis",
    "Prox",
    "Distance",
    "Solver",
    "Optimizer",
    "Schedule",
    "LoopContext",
]


class Component:
    """Base of every plugin-provided piece.

    Attributes
    ----------
    kind : str
        One of :data:`core.kinds.KINDS`.
    name : str
        The name configs use to select it.
    params : tuple of core.params.Param
        Declared parameters; ``__init__`` receives them as keyword arguments.
    requires : tuple of str
        Modules that must be importable for the piece to be available.
    extra : str or None
        The extra of the providing distribution that installs ``requires``
        (``pip install "<distribution>[<extra>]"``).
    install_hint : str or None
        A command that installs ``requires``, when the default hint would not.
    """

    kind = None
    name = None
    params = ()
    requires = ()
    extra = None
    install_hint = None

    def __init__(self, **params):
        for key, value in params.items():
            setattr(self, key, value)
        self.config = dict(params)

    @classmethod
    def check(cls, params):
        """Cross-parameter validation of resolved ``params`` (raise ConfigError).

        Called by the config resolver after every single parameter was checked, so
        a ``--dry-run`` catches e.g. ``low >= high``. Default: nothing to check.
        """

    @classmethod
    def describe(cls):
        """One-line description: the first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


@dataclass
class Data:
    """A data set.

    Attributes
    ----------
    X : ndarray, shape (n, d)
        Inputs; a bias, when used, is the last column, equal to 1.
    Y : ndarray, shape (n,) or (n, k)
        Targets.
    X_test, Y_test : ndarray or None
        Optional held-out data of the same layout.
    bias : bool
        Whether the last column of ``X`` is the constant bias column.
    extras : dict of ndarray
        Ground truth a data set knows (a planted teacher ``w_star``...), stored
        with the run as ``extra.<name>`` and given to the algorithm as
        ``Problem.extras``.
    """

    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray | None = None
    Y_test: np.ndarray | None = None
    bias: bool = False
    extras: dict = field(default_factory=dict)

    def arrays(self):
        """The arrays by name, skipping absent ones (for storage)."""
        out = {"X": self.X, "Y": self.Y}
        if self.X_test is not None:
            out["X_test"] = self.X_test
            out["Y_test"] = self.Y_test
        for name, value in self.extras.items():
            out[f"extra.{name}"] = np.asarray(value)
        return out


@dataclass
class Problem:
    """Everything an algorithm needs to start: data, initial network, model options.

    Attributes
    ----------
    X : ndarray, shape (n, d)
    Y : ndarray, shape (n,) or (n, k)
    W0 : ndarray, shape (d, m)
    a0 : ndarray, shape (m,) or (m, k)
    scaling : str
        Output scaling, see :func:`core.model.output_scale`.
    loss : str
        Loss convention, see :func:`core.model.loss_factor`.
    bias : bool
        Whether the last input column is the bias.
    seed : int
        The run's seed.
    rng : numpy.random.Generator
        The algorithm's own random stream, derived from ``seed``.
    X_test, Y_test : ndarray or None
    extras : dict of ndarray
        The data set's ground truth (:attr:`Data.extras`).
    registry : core.registry.Registry or None
        The registry the run was built from, for algorithms that build plugins
        they name (a prox solver, a distance): :meth:`build`. None outside a
        run (:meth:`build` then uses :func:`core.registry.get_registry`).
    """

    X: np.ndarray
    Y: np.ndarray
    W0: np.ndarray
    a0: np.ndarray
    scaling: str = "standard"
    loss: str = "mse"
    bias: bool = False
    seed: int = 0
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    X_test: np.ndarray | None = None
    Y_test: np.ndarray | None = None
    extras: dict = field(default_factory=dict)
    registry: object = field(default=None, repr=False, compare=False)

    @property
    def n(self):
        return self.X.shape[0]

    @property
    def d(self):
        return self.X.shape[1]

    def build(self, kind, name, params=None, owner=None):
        """An instance of the ``kind`` plugin ``name`` with validated ``params``, from
        the run's registry (the process-wide one outside a run); see
        :meth:`core.registry.Registry.build`."""
        registry = self.registry
        if registry is None:
            from .registry import get_registry

            registry = get_registry()
        return registry.build(kind, name, params, owner)

    @property
    def m(self):
        return self.W0.shape[1]


class DataSet(Component):
    """A data set plugin: ``load(rng) -> Data``."""

    kind = "data"

    def load(self, rng):
        raise NotImplementedError


class Init(Component):
    """An initialisation plugin: ``initialize(d, m, k, rng) -> (W0, a0)``.

    ``W0`` has shape ``(d, m)``; ``a0`` has shape ``(m,)`` when ``k == 1`` and the
    targets are 1-D, else ``(m, k)``. An init may choose its own width (a grid), in
    which case ``m`` is a hint it documents.
    """

    kind = "init"

    def initialize(self, d, m, k, rng):
        raise NotImplementedError


class Algorithm(Component):
    """A training algorithm: one ``step()`` is one outer iteration.

    Contract
    --------
    setup(problem)
        Build the state from a :class:`Problem`.
    step()
        Advance one outer iteration.
    loss() -> float
        Training loss of the current network.
    state() -> dict of ndarray
        Named arrays recorded in snapshots; at least ``W`` (d, m) and ``a``.
    scalars() -> dict of float
        Extra per-step scalars (gradient norm, mass...); may be empty.
    records() -> dict of 1-D ndarray or None
        Inner-loop records of the last step (equal-length columns, one row per
        inner iteration), or None.
    state_dict() -> dict
        Everything needed to continue exactly: numpy arrays and JSON-able values
        (nested dicts allowed), never arbitrary objects.
    load_state_dict(state)
        Inverse of ``state_dict``.

    An algorithm that uses other plugins by name (a prox solver, say) builds them
    in ``setup`` from ``problem.registry``, the run's registry.

    Training together
    -----------------
    A class with ``batchable = True`` declares that runs differing only in their
    seed may be trained as one ensemble: sweeps then hand such points to one
    worker, which sets each up as usual and advances the members still going with
    one call of ``step_together(algorithms)`` per step (:func:`core.loop.execute`).
    The default ``step_together`` steps the members one after another; a batchable
    algorithm overrides it with one batched program (stacked parameters, batched
    matmuls) whose result equals stepping each member on its own, to float
    tolerance. Members that stop are dropped from the next call.

    The loop asks for a run's loss only when the run begins (after ``setup`` and,
    on resume, ``load_state_dict``), after one call of
    ``start_together(algorithms)`` for all the runs it trains (a list of one for a
    run alone). An algorithm whose start costs a measurement of its own (the loss
    and gradient norm at the initial point) may leave it to ``start_together`` and
    make it there for all members at once; ``loss()`` must still work without it.
    """

    kind = "algorithm"
    batchable = False

    @classmethod
    def start_together(cls, algorithms):
        """Prepare ``algorithms`` (set-up instances of ``cls``) for their first ``loss()``.

        Default: nothing. An error raised here is not the members': the loop goes
        on without it, and each member then measures its own start in ``loss()``.
        """

    @classmethod
    def step_together(cls, algorithms):
        """Advance each of ``algorithms`` (set-up instances of ``cls``) by one step."""
        for algorithm in algorithms:
            algorithm.step()

    def setup(self, problem):
        raise NotImplementedError

    def step(self):
        raise NotImplementedError

    def loss(self):
        raise NotImplementedError

    def state(self):
        raise NotImplementedError

    def scalars(self):
        return {}

    def records(self):
        return None

    def state_dict(self):
        raise NotImplementedError

    def load_state_dict(self, state):
        raise NotImplementedError


@dataclass
class LoopContext:
    """What stoppers, loggers and savers see of a running loop.

    Attributes
    ----------
    step : int
        Number of completed outer steps (0 before the first).
    elapsed : float
        Wall-clock seconds of stepping so far, across resumes.
    loss : float
        Current training loss (NaN before the run begins: a logger's ``setup``
        sees NaN).
    algorithm : Algorithm
    problem : Problem
    trace : core.store.TraceWriter
        Where loggers append rows.
    since_save_steps : int
        Steps since the last durable save.
    since_save_seconds : float
        Seconds since the last durable save.
    final : bool
        True on the last observation of the run.
    registry : core.registry.Registry or None
        The registry the run was built from (to look up metrics etc.).
    run_dir : pathlib.Path or None
        The run's folder (a logger may keep files of its own there, e.g. a
        TensorBoard event file under ``run_dir / "tensorboard"``).
    status, reason : str or None
        Set on the final observation and at ``close``: how the run ends.
    """

    step: int
    elapsed: float
    loss: float
    algorithm: Algorithm
    problem: Problem
    trace: object
    since_save_steps: int = 0
    since_save_seconds: float = 0.0
    final: bool = False
    registry: object = None
    run_dir: object = None
    status: str | None = None
    reason: str | None = None


class Stopper(Component):
    """Decides when a run ends: ``should_stop(ctx) -> reason str or None``.

    ``progress(ctx)`` may return the fraction done in [0, 1] (for the ETA), and
    ``status`` is the run status a stop by this stopper gives (``"finished"``
    unless the stopper reports a failure such as ``"diverged"``).
    """

    kind = "stopper"
    status = "finished"

    def should_stop(self, ctx):
        raise NotImplementedError

    def progress(self, ctx):
        return None


class Logger(Component):
    """Records what a run keeps: ``observe(ctx)`` appends rows to ``ctx.trace``.

    Called once after setup (step 0), after every step, and once with
    ``ctx.final = True`` at the end; a logger decides its own cadence.
    ``state_dict`` / ``load_state_dict`` keep that cadence across resumes.
    ``close(ctx)`` is called exactly once when the run ends, whatever its status
    (``ctx.status``, ``ctx.reason``), also when an earlier hook raised: release
    files and connections there.
    """

    kind = "logger"

    def setup(self, ctx):
        pass

    def observe(self, ctx):
        raise NotImplementedError

    def close(self, ctx):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Saver(Component):
    """Decides when the trace and checkpoint are made durable.

    ``should_save(ctx) -> bool``; the store writes atomically. The final save
    always happens whatever the savers say. ``checkpoint`` tells whether the
    algorithm state is written too (needed for ``--resume``).
    """

    kind = "saver"
    checkpoint = True

    def should_save(self, ctx):
        raise NotImplementedError


class Metric(Component):
    """A scalar quantity a logger can compute: ``compute(algorithm, problem)``.

    Returns a dict of floats (one metric may produce several named values). Its
    parameters come from ``loggers.scalars.metrics`` (name -> parameters); its
    keys must not collide with the other columns of the scalars row.

    A metric that compares with its previous evaluation keeps what it needs in
    the instance and returns it from ``state_dict()`` (numpy arrays and JSON
    values); the ``scalars`` logger checkpoints it, and ``load_state_dict(state)``
    restores it on ``--resume``, so a resumed run logs what an uninterrupted one
    would.
    """

    kind = "metric"

    def compute(self, algorithm, problem):
        raise NotImplementedError

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Plot(Component):
    """A figure drawn from a saved run.

    ``applies(run) -> bool`` says whether the run has what the figure needs;
    ``draw(run) -> dict`` returns ``{file stem: matplotlib Figure}``.
    """

    kind = "plot"

    def applies(self, run):
        return True

    def draw(self, run):
        raise NotImplementedError


class Indicator(Component):
    """Numbers computed from a saved run by :func:`core.analysis.compute_indicators`
    (``postprocess.py``).

    ``summary(run) -> dict`` of scalars for the whole run, and
    ``per_snapshot(run, W, a) -> dict`` of scalars for one parameter snapshot
    (or None when the indicator has none).
    """

    kind = "indicator"

    def applies(self, run):
        return True

    def summary(self, run):
        return {}

    def per_snapshot(self, run, W, a):
        return None


class SweepAnalysis(Component):
    """Tables and figures computed from a whole sweep (``postprocess.py`` / ``plot.py``
    on a sweep folder), for what no single run shows: statistics over seeds of a
    curve, a census of the end points of many runs.

    ``applies(sweep) -> bool`` says whether the sweep has what the analysis needs;
    ``tables(sweep) -> dict`` returns ``{file name: content}`` written into the
    sweep folder (a list of dicts becomes CSV, a dict becomes JSON);
    ``draw(sweep) -> dict`` returns ``{file stem: matplotlib Figure}``. ``sweep`` is
    a :class:`core.sweep.SweepResults`.
    """

    kind = "sweep_analysis"

    def applies(self, sweep):
        return True

    def tables(self, sweep):
        return {}

    def draw(self, sweep):
        return {}


class Prox(Component):
    """A proximal solver, selected by name by the algorithm that uses it.

    The problem it solves is defined by the algorithm family that uses it (for
    the JKO flow: the KL proximal operator of a quadratic energy, see
    :mod:`plugins.jko`); an algorithm declares the parameter that names its prox
    with ``Param(..., plugin_kind="prox")`` and its options with
    ``Param(..., options_of=...)``, so the config resolver checks both.
    """

    kind = "prox"

    def solve(self, *args, **kwargs):
        raise NotImplementedError


class Distance(Component):
    """A distance between two configurations of neurons, for proximal-point steps.

    An algorithm selects one by name (``Param(..., plugin_kind="distance")``) and
    builds it with ``problem.registry.build("distance", name, options)``.

    Contract
    --------
    setup(problem, rng)
        Once, before the first value; ``rng`` is a ``numpy.random.Generator`` of
        the run's seed (random projections, say).
    value(W, W_prev, a) -> torch scalar
        ``W`` (d, m), the current first layer (a tensor that may require grad),
        ``W_prev`` (d, m) the previous outer iterate (no grad), ``a`` (m,) or
        (m, k) the second layer. Differentiable in ``W`` (and in ``a`` when the
        distance uses it).
    scalars() -> dict of float
        Numbers about the last value (e.g. the fraction of neurons an optimal
        assignment exchanges); may be empty.
    state_dict() / load_state_dict(state)
        What an exact resume needs (a random stream's state, a cached plan).
    """

    kind = "distance"

    def setup(self, problem, rng):
        pass

    def value(self, W, W_prev, a):
        raise NotImplementedError

    def scalars(self):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Solver(Component):
    """A solver of a convex program, stepped by an algorithm so its iterations are the
    run's steps (the convex family, :mod:`plugins.convex`, defines the programs).

    Contract
    --------
    start(program)
        Set up for a program (its arrays and options, defined by the family).
    step() -> dict of float
        Advance: one iteration of an iterative solver, the whole solve for a
        one-shot one; returns what the run records (objective, duality gap,
        constraint violation, ...).
    done -> bool
        Whether the solution is certified (or the one-shot solve ended).
    solution() -> dict of ndarray
        The current primal variables.
    state_dict() / load_state_dict(state)
        For resuming an iterative solve exactly.
    """

    kind = "solver"

    def start(self, program):
        raise NotImplementedError

    def step(self):
        raise NotImplementedError

    @property
    def done(self):
        return False

    def solution(self):
        raise NotImplementedError

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Optimizer(Component):
    """An optimizer an algorithm selects by name: an update rule on named torch tensors.

    An algorithm declares ``Param("optimizer", str, ..., plugin_kind="optimizer")`` and
    ``Param("optimizer_options", dict, {}, ..., options_of="optimizer")``, builds the
    plugin with ``problem.build("optimizer", name, options)`` and binds it to its
    parameters with :meth:`create`. The learning rate belongs to the algorithm (its
    ``lr``, decay or schedule), so it is not one of the plugin's parameters.

    Contract
    --------
    create(params, lr) -> optimizer
        ``params`` is ``{name: tensor}``, the trained parameters in order (leaf
        tensors, updated in place); ``lr`` the first learning rate. The object
        returned has:

        ``lr``
            The learning rate of the next update, a float the algorithm may set
            before any update.
        ``step(params, grads)``
            Update ``params[name]`` in place (under ``torch.no_grad()``) from
            ``grads[name]`` for every trained name; the optimizer may consume
            (modify) ``grads``.
        ``needs_closure`` (optional, default False)
            True for optimizers that evaluate the objective themselves within a
            step (L-BFGS's line search, schedule-free's extrapolated point): they
            are called as ``step(params, grads, closure)``, where ``closure()``
            re-evaluates the objective at the current ``params`` and returns
            ``(value, grads)``; ``grads`` may then be empty.
        ``state_dict()``
            The buffers as numpy arrays and JSON values (no pickle): the layout
            of ``torch.optim``'s ``state_dict()`` made plain.
        ``load_state_dict(state, params)``
            Restore the buffers of :meth:`state_dict` onto ``params``' dtype and
            device; hyperparameters stay those of the config.

    torch_optimizer(params, lr) -> torch.optim.Optimizer
        A plugin that wraps a ``torch.optim.Optimizer`` subclass implements only
        this (``params`` a list of tensors): the default :meth:`create` adapts it
        (:class:`core.optim_torch.TorchOptimizerAdapter`), and a class attribute
        ``needs_closure = True`` marks optimizers whose ``step`` takes a closure.
    """

    kind = "optimizer"
    needs_closure = False

    def create(self, params, lr):
        """The optimizer bound to ``params`` (``{name: tensor}``), first rate ``lr``."""
        from .optim_torch import TorchOptimizerAdapter

        return TorchOptimizerAdapter.wrap(self, params, lr)

    def torch_optimizer(self, params, lr):
        raise NotImplementedError(
            f"optimizer {self.name!r} implements neither create() nor torch_optimizer()"
        )


class Schedule(Component):
    """A learning-rate schedule an algorithm selects by name: a factor over steps.

    An algorithm declares ``Param("schedule", str, None, ..., plugin_kind="schedule",
    nullable=True)`` and ``Param("schedule_options", dict, {}, ...,
    options_of="schedule")``; its learning rate at a step is its ``lr`` times the
    schedule's ``factor``. What a step is (an outer step, an update) the algorithm
    documents.

    Contract
    --------
    create() -> schedule
        An object with ``factor`` (the multiplier of the current step, 1 at the
        start for most schedules), ``step(loss=None)`` (advance one step;
        ``loss`` is the objective of the step just done, for schedules that
        react to it), ``state_dict()`` (numpy arrays and JSON values) and
        ``load_state_dict(state)``.
    torch_scheduler(optimizer) -> torch.optim.lr_scheduler.LRScheduler
        A plugin that wraps a ``torch.optim.lr_scheduler`` class implements only
        this: the default :meth:`create` runs the scheduler on a one-parameter
        optimizer of learning rate 1, whose rate is then the factor
        (:class:`core.optim_torch.TorchScheduleAdapter`).
    """

    kind = "schedule"

    def create(self):
        """A fresh schedule, at its first step."""
        from .optim_torch import TorchScheduleAdapter

        return TorchScheduleAdapter.wrap(self)

    def torch_scheduler(self, optimizer):
        raise NotImplementedError(
            f"schedule {self.name!r} implements neither create() nor torch_scheduler()"
        )

"""Step-size schedules: the learning rate of the update that follows ``step`` updates.

``constant``
    ``lr`` throughout.
``step``
    ``lr * gamma ** k`` with ``k`` the number of milestones ``<= step``: the update
    number ``step`` (0-based) uses the decayed rate once ``step`` reaches a milestone,
    as ``torch.optim.lr_scheduler.MultiStepLR`` stepped once per update.

Examples
--------
>>> [learning_rate(step, 1.0, "step", [2, 4], 0.5) for step in range(6)]
[1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
>>> learning_rate(10**6, 0.1, "constant")
0.1
"""

import bisect

__all__ = ["learning_rate"]


def learning_rate(step, lr, schedule="constant", milestones=(), gamma=0.1):
    """Learning rate of the update done after ``step`` updates.

    Parameters
    ----------
    step : int
        Updates already done (the algorithm's ``n_steps``).
    lr : float
        Base learning rate.
    schedule : {"constant", "step"}
    milestones : sequence of int
        Increasing step counts (``schedule="step"``).
    gamma : float
        Decay factor per milestone passed.

    Returns
    -------
    lr : float
    """
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * gamma ** bisect.bisect_right(milestones, step)
    raise ValueError(f"schedule must be 'constant' or 'step'; got {schedule!r}")

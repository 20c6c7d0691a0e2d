"""Minibatches drawn without replacement, reshuffled every epoch from the run's seed.

Epoch ``e`` visits the points in the order of the permutation drawn by
``numpy.random.default_rng([seed_word, e])``, in consecutive batches of
``batch_size`` (the last batch of an epoch is smaller when ``batch_size`` does not
divide ``n``). ``seed_word`` is drawn once from the algorithm's random stream
(``Problem.rng``, derived from the run's seed), so every member of a sweep has its own
order. The whole shuffle state is three integers (``seed_word``, ``epoch``,
``position``), kept in checkpoints as JSON: a resumed run draws exactly the batches
the uninterrupted run draws, without pickling a generator.

Examples
--------
>>> shuffle = EpochShuffle(n=5, batch_size=2, seed_word=7)
>>> [len(shuffle.next_batch()) for _ in range(4)]
[2, 2, 1, 2]
>>> sorted(int(i) for i in EpochShuffle(5, 2, 7).permutation(0))
[0, 1, 2, 3, 4]
"""

import numpy as np

__all__ = ["EpochShuffle"]


class EpochShuffle:
    """Batches of indices of ``n`` points, reshuffled every epoch.

    Parameters
    ----------
    n : int
        Number of points.
    batch_size : int
        Points per batch (at most ``n``).
    seed_word : int
        In ``[0, 2**63)``; with the epoch number it seeds each epoch's permutation.
    """

    def __init__(self, n, batch_size, seed_word):
        self.n, self.batch_size = int(n), min(int(batch_size), int(n))
        self.seed_word = int(seed_word)
        self.epoch, self.position = 0, 0
        self._order = None

    def permutation(self, epoch):
        """The order of the points in ``epoch``, an int64 array of shape ``(n,)``."""
        return np.random.default_rng([self.seed_word, int(epoch)]).permutation(self.n)

    def next_batch(self):
        """Indices of the next batch, shape ``(b,)`` with ``b <= batch_size``; advances."""
        if self.position >= self.n:
            self.epoch, self.position = self.epoch + 1, 0
        if self._order is None or self._order[0] != self.epoch:
            self._order = (self.epoch, self.permutation(self.epoch))
        start = self.position
        self.position = min(start + self.batch_size, self.n)
        return self._order[1][start : self.position]

    def state_dict(self):
        """``{"seed_word", "epoch", "position"}``: plain ints (JSON)."""
        return {"seed_word": self.seed_word, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state):
        self.seed_word = int(state["seed_word"])
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = None

r"""Heavy-ball momentum gradient descent, as a third-party relulab plugin.

Polyak's heavy ball on both layers of the network:

.. math::

    v_{t+1} = \beta v_t - \eta \nabla L(\theta_t), \qquad \theta_{t+1} = \theta_t + v_{t+1}.

References
----------
B. T. Polyak, "Some methods of speeding up the convergence of iteration methods",
USSR Computational Mathematics and Mathematical Physics 4(5), 1964.

Everything it uses comes from ``relulab``, the stable API of plugin packages.
"""

import numpy as np

from relulab import Algorithm, Param, hookimpl, model

__all__ = ["HeavyBall"]


class HeavyBall(Algorithm):
    """Polyak heavy-ball momentum GD on both layers (numpy, closed-form gradient)."""

    name = "heavy_ball"
    params = (
        Param("lr", float, 0.01, "step size eta", low=0, low_open=True),
        Param("beta", float, 0.9, "momentum beta", low=0, high=1, high_open=True),
    )

    def setup(self, problem):
        self.problem = problem
        self.W = problem.W0.astype(np.float64)
        self.a = problem.a0.astype(np.float64)
        self.vW = np.zeros_like(self.W)
        self.va = np.zeros_like(self.a)

    def _loss_and_grad(self):
        p = self.problem
        return model.loss_and_grad(p.X, p.Y, self.W, self.a, p.scaling, p.loss)

    def step(self):
        _, gW, ga = self._loss_and_grad()
        self.vW = self.beta * self.vW - self.lr * gW
        self.va = self.beta * self.va - self.lr * ga
        self.W = self.W + self.vW
        self.a = self.a + self.va

    def loss(self):
        p = self.problem
        return model.loss(p.X, p.Y, self.W, self.a, p.scaling, p.loss)

    def state(self):
        return {"W": self.W.copy(), "a": self.a.copy()}

    def state_dict(self):
        return {"W": self.W, "a": self.a, "vW": self.vW, "va": self.va}

    def load_state_dict(self, state):
        self.W, self.a = state["W"].copy(), state["a"].copy()
        self.vW, self.va = state["vW"].copy(), state["va"].copy()


@hookimpl
def relulab_algorithms():
    return [HeavyBall]

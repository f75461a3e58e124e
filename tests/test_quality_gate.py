"""The quality gate's verdict itself, apart from the summary text: what the DAG's condition reads."""

import pytest

from components.lib.data.contract import CAUSAL_LM, CLASSIFICATION
from components.lib.tasks import task_named


@pytest.mark.parametrize(
    "task, value, threshold, passes",
    [
        (CLASSIFICATION, 0.61, 0.6, True),
        (CLASSIFICATION, 0.6, 0.6, True),  # at the threshold passes
        (CLASSIFICATION, 0.59, 0.6, False),
        (CLASSIFICATION, 0.0, 0.0, True),  # no minimum
        (CAUSAL_LM, 63.0, 64.0, True),  # lower is better
        (CAUSAL_LM, 65.0, 64.0, False),
        (CAUSAL_LM, 10_000.0, 0.0, True),  # 0: no limit
    ],
)
def test_the_gate_passes_exactly_what_it_should(task, value, threshold, passes):
    assert task_named(task).gate.passes(value, threshold) is passes


def test_a_check_switched_off_stays_off_after_a_refusal_and_the_rest_are_not_run():
    from components.lib.quality_gate import gate_checks

    ran = []
    results = gate_checks([("a", True, lambda: "no"), ("b", False, lambda: ran.append("b")), ("c", True, lambda: ran.append("c"))])
    assert [result["result"] for result in results] == ["refused", "off", "not checked"] and ran == []

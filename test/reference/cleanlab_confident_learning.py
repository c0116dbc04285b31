"""Reference for src/audit/confident-learning.ts: cleanlab's own confident learning.

    python3 -m venv /tmp/venv-cleanlab && /tmp/venv-cleanlab/bin/pip install cleanlab scikit-learn
    /tmp/venv-cleanlab/bin/python test/reference/cleanlab_confident_learning.py

Writes test/reference/cleanlab-confident-learning.json: seeded out-of-fold-like probabilities
(softmax of noisy logits; a share of labels flipped; one class given to no row), the labels,
and what cleanlab returns for them: get_confident_thresholds and find_label_issues with
filter_by='confident_learning', ranked by self-confidence. test/audit-confident-learning.test.ts
compares with it, so CI needs no Python.
"""
import json
import os

import cleanlab
import numpy as np
from cleanlab.count import get_confident_thresholds
from cleanlab.filter import find_label_issues


def case(seed, n, k, flip, missing_class=None):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    if missing_class is not None:
        true[true == missing_class] = (missing_class + 1) % k
    logits = rng.normal(0, 1.0, (n, k))
    logits[np.arange(n), true] += rng.uniform(0.0, 4.0, n)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # Six decimals: what the JSON stores is exactly what cleanlab saw (float32 in the test is within 1e-8).
    probs = np.round(probs, 6)
    labels = true.copy()
    flipped = rng.random(n) < flip
    labels[flipped] = (labels[flipped] + rng.integers(1, k, flipped.sum())) % k
    if missing_class is not None:
        labels[labels == missing_class] = (missing_class + 1) % k
    # cleanlab needs every class at least once in the labels unless told the class count; K comes from pred_probs.
    issues = find_label_issues(labels, probs, filter_by="confident_learning", return_indices_ranked_by="self_confidence")
    thresholds = get_confident_thresholds(labels, probs)
    return {
        "seed": seed,
        "classes": k,
        "labels": labels.tolist(),
        "probabilities": [round(float(v), 6) for v in probs.reshape(-1)],
        "thresholds": [float(t) for t in thresholds],
        "issues": [int(i) for i in issues],
    }


out = {
    "cleanlab": cleanlab.__version__,
    "cases": [case(1, 300, 3, 0.1), case(2, 400, 5, 0.2), case(3, 250, 4, 0.15, missing_class=2)],
}
path = os.path.join(os.path.dirname(__file__), "cleanlab-confident-learning.json")
with open(path, "w") as f:
    json.dump(out, f)
print(path, [len(c["issues"]) for c in out["cases"]])

"""``grukit evaluate``: a trained classifier scored on a labelled file it has not seen.

The report holds the accuracy, each class's recall with its counts, the confusion counts, and the
best accuracy a constant answer reaches on the same file (always the file's most frequent class),
so a number is read against what knowing nothing about the input scores. Labels the model was never
trained on count as wrong and are listed; a file sharing no label with the model is refused.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence


def classification_report(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str], source) -> Dict:
    """``truth`` and ``predicted`` [N] class names; ``classes`` the model's. The report (a dict, JSON-ready)."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels against {len(predicted)} predictions")
    if not truth:
        raise ValueError(f"--csv {source!r} holds nothing to evaluate")
    n = len(truth)
    counts = Counter(truth)
    if not set(counts) & set(classes):  # every answer would count wrong: an accuracy of 0 means nothing here
        raise ValueError(
            f"--csv {source!r} shares no label with the model: the file has {_some(sorted(counts))}, the model "
            f"knows {_some(list(classes))} (is --label the right column?)"
        )
    hits = Counter(t for t, p in zip(truth, predicted) if t == p)
    per_class = {}
    for name in list(classes) + sorted(set(counts) - set(classes)):
        if counts[name]:
            per_class[name] = {"samples": counts[name], "correct": hits[name], "recall": hits[name] / counts[name]}
    confusion = Counter(f"{t} -> {p}" for t, p in zip(truth, predicted) if t != p)
    most_frequent, its_count = counts.most_common(1)[0]
    return {
        "file": str(source),
        "samples": n,
        "accuracy": sum(hits.values()) / n,
        "constant answer": {"class": most_frequent, "accuracy": its_count / n},
        "per class": per_class,
        "unseen labels": sorted(set(counts) - set(classes)),
        "most frequent errors": dict(confusion.most_common(10)),
    }


def _some(names: Sequence[str], shown: int = 5) -> str:
    """Up to ``shown`` of ``names``, quoted, and how many more there are."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(map(repr, names[:shown])) + more


def report_lines(report: Dict, task: str) -> List[str]:
    """The report as the lines ``grukit evaluate`` prints."""
    constant = report["constant answer"]
    lines = [
        f"{task}: accuracy {report['accuracy']:.4f} on {report['samples']} samples of {report['file']}",
        f"  always {constant['class']!r} (the file's most frequent class) would score {constant['accuracy']:.4f}",
        "  per class (recall):",
    ]
    width = max(len(name) for name in report["per class"])
    for name, row in report["per class"].items():
        lines.append(f"    {name:<{width}}  {row['recall']:.4f}  ({row['correct']} of {row['samples']})")
    if report["unseen labels"]:
        lines.append(
            "  labels the model was not trained on (counted wrong): " + ", ".join(map(repr, report["unseen labels"]))
        )
    if report["most frequent errors"]:
        lines.append(
            "  most frequent errors (true -> predicted): "
            + ", ".join(f"{pair} x{count}" for pair, count in report["most frequent errors"].items())
        )
    return lines

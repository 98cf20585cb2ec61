"""grukit compare --min-gru: the selective-copying task, the minGRU's parameter count, and the
section it writes (quick settings), reusing the GRU's runs already in runs.jsonl."""

import json
import math

import numpy as np
import pytest
import torch

from grukit.apps.studies import memory_tasks
from grukit.apps.studies.model_sizes import matched_hidden, recurrent_parameters
from grukit.apps.studies.report_file import read_sections


def test_selective_copy_layout():
    length = 30
    x, y = memory_tasks.selective_copy(40, length, np.random.default_rng(0))
    assert x.shape == (40, length + 20, 10) and y.shape == (40, length + 20)
    symbols = x.argmax(2)
    stored = symbols[:, :length]
    assert ((stored > 0).sum(1) == 10).all()  # ten symbols among the first T steps, blanks elsewhere
    assert (symbols[:, length] == 9).all() and (symbols[:, length + 1 :] == 0).all()
    # the target is the stored symbols, in the order they came
    for row in range(40):
        assert torch.equal(y[row, -10:], stored[row][stored[row] > 0])
    assert (y[:, :-10] == 0).all()
    # the positions differ between sequences (content, not position, says what to keep)
    assert len({tuple(torch.nonzero(stored[row]).flatten().tolist()) for row in range(40)}) > 30


def test_selective_copy_trivial_loss_is_the_best_memoryless_prediction():
    length = 25
    x, y = memory_tasks.selective_copy(20, length, np.random.default_rng(1))
    logits = torch.full((20, length + 20, 9), -1e9)
    logits[:, : length + 10, 0] = 0
    logits[:, length + 10 :, 1:] = 0
    loss = memory_tasks.loss_of("selective", logits, y).item()
    assert math.isclose(loss, memory_tasks.trivial_loss("selective", length), rel_tol=1e-6)


def test_selective_copy_needs_room_for_the_symbols():
    with pytest.raises(ValueError, match="T >= 10"):
        memory_tasks.selective_copy(2, 9, np.random.default_rng(0))


@pytest.mark.parametrize("task", ["adding", "copy", "selective"])
def test_min_gru_memory_model_has_the_counted_parameters(task):
    model = memory_tasks.MemoryModel("min-gru", task, 16)
    inputs = memory_tasks.task_inputs(task)
    assert sum(p.numel() for p in model.rnn.parameters()) == recurrent_parameters("min-gru", inputs, 16)
    assert recurrent_parameters("min-gru", inputs, 16) == 2 * (inputs * 16 + 16)
    x, _ = memory_tasks.make_batch(task, 3, 12, np.random.default_rng(0))
    assert model(x).shape == ((3, 1) if task == "adding" else (3, 32, 9))


@pytest.mark.parametrize("task", ["adding", "copy", "selective"])
def test_min_gru_blocks_are_compared_at_the_grus_parameter_count(task):
    inputs = memory_tasks.task_inputs(task)
    target = recurrent_parameters("gru-after", inputs, 64)
    width = matched_hidden("min-gru-blocks", inputs, target)
    model = memory_tasks.MemoryModel("min-gru-blocks", task, width)
    counted = sum(p.numel() for p in model.rnn.parameters())
    assert counted == recurrent_parameters("min-gru-blocks", inputs, width)
    # the closest width: one wider or narrower is further from the GRU's count
    for other in (width - 1, width + 1):
        assert abs(recurrent_parameters("min-gru-blocks", inputs, other) - target) >= abs(counted - target)
    x, _ = memory_tasks.make_batch(task, 3, 12, np.random.default_rng(0))
    assert model(x).shape == ((3, 1) if task == "adding" else (3, 32, 9))


def test_compare_min_gru_quick_writes_its_section_and_reuses_runs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from grukit.apps.cli import main

    out = tmp_path / "cmp"
    assert main(["compare", "--min-gru", "--quick", "--out", str(out)]) == 0
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert {r["task"] for r in runs} == {"adding", "copy", "selective"}
    assert {r["kind"] for r in runs} == {"gru-after", "min-gru", "min-gru-blocks"}
    section = read_sections(str(out / "COMPARISON.md"))["min-gru"]
    for heading in ("### Sentiment and weather", "### Adding problem", "### Copy task", "### Selective copying"):
        assert heading in section
    assert "minGRU grukit, matched parameters" in section and "### The paper's claims, judged here" in section
    assert "minGRU blocks grukit, matched parameters" in section
    assert "The paper's model body (3 minGRU blocks" in section
    # every run is already there: a second call trains none of them again
    capsys.readouterr()
    assert main(["compare", "--min-gru", "--memory", "--quick", "--out", str(out)]) == 0
    assert f"resuming: {len(runs)} runs" in capsys.readouterr().out
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(runs)
    # and a full call keeps the task results of the same budgets: nothing is trained again
    tasks_before = json.loads((out / "min_gru_results.json").read_text())
    assert main(["compare", "--min-gru", "--quick", "--out", str(out)]) == 0
    assert " seed 0: " not in capsys.readouterr().out
    assert json.loads((out / "min_gru_results.json").read_text()) == tasks_before


def test_sequence_model_reads_the_blocks_output_at_each_last_valid_step():
    """The blocks' h_n is a minGRU state before the MLP, so the task head reads their output instead,
    at each review's last word: a padded batch gives each review what it gets alone."""
    from grukit.apps.studies.compare import SequenceModel

    torch.manual_seed(0)
    model = SequenceModel("min-gru-blocks", 8, 6, 1, vocab=20)
    ids, lengths = torch.randint(1, 20, (3, 7)), torch.tensor([7, 3, 5])
    together = model(ids, lengths)
    alone = torch.cat([model(ids[b : b + 1, :n]) for b, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(together, alone)
    outputs = [model.rnn(model.embedding(ids[b : b + 1, :n]))[0] for b, n in enumerate(lengths.tolist())]
    torch.testing.assert_close(together, torch.cat([model.head(output[:, -1]) for output in outputs]))
